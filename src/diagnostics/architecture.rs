//! Architecture and hyperparameter hints: what the model record and the
//! config say *before* the run goes wrong (issue 12, item 5).
//!
//! Two kinds, `architecture` and `hyperparameters`, at most one finding
//! each, listing every problem found in its evidence. They are always
//! [`Severity::Info`]: a hint on the run page and in the findings API, never
//! a raised finding, so no webhook fires for them (the alert policy only
//! alerts on warning or worse). When the run then shows the problem, the
//! raised finding of the existing kind names the hint as its cause
//! (`caused_by`, and a sentence in front of its cause): see
//! [`link_causes`] and the last column below.
//!
//! | rule | kind | fires when | explains (if raised) |
//! |---|---|---|---|
//! | deep saturating stack | `architecture` | ≥ [`DEEP_SATURATING_LAYERS`] hidden sigmoid/tanh layers, no normalisation layer, no residual connection | `vanishing_gradients`, `saturated_activations` |
//! | bottleneck | `architecture` | a hidden dense or recurrent layer narrower than the number of classes (not for language models) | `underfitting` |
//! | clipped head | `architecture` | a ReLU on the output layer of a regression model or in front of a loss that takes logits | `underfitting` |
//! | linear stack | `architecture` | a dense layer without activation feeding another dense layer (activations recorded elsewhere in the model; no attention or recurrent layers, whose activations are functional) | `underfitting` |
//! | over-parameterised | `architecture` | trainable parameters > [`FAR_MORE_PARAMS_PER_SAMPLE`] per training sample, with no weight decay, dropout, augmentation or early stopping, and not a fine-tune of a pretrained model | `overfitting` |
//! | LR too high | `hyperparameters` | SGD: effective step lr/(1−m) > [`SGD_STEP_MAX`] × max(1, batch/256); Adam family: lr > [`ADAM_LR_MAX`] | `divergence`, `exploding_gradients`, `oscillating_loss` |
//! | LR too low | `hyperparameters` | SGD: lr/(1−m) < [`SGD_STEP_MIN`]; Adam family: lr < [`ADAM_LR_MIN`] (not for fine-tunes) | `slow_convergence`, `underfitting`, `unchanged_weights` |
//! | batch vs data | `hyperparameters` | batch (× accumulation) > the training set, or < [`MIN_STEPS_PER_EPOCH`] steps per epoch | — |
//! | Adam + L2 | `hyperparameters` | PyTorch `Adam` (not `AdamW`) with `weight_decay` > 0 in the model record | — |
//! | high momentum | `hyperparameters` | momentum (β1 for Adam) ≥ [`HIGH_MOMENTUM`] | `divergence`, `exploding_gradients`, `oscillating_loss` |
//! | no warm-up | `hyperparameters` | a transformer (attention layers by type or name) whose LR is known not to warm up, and not pre-LN (`norm_first`) | `divergence`, `exploding_gradients`, `oscillating_loss` |
//!
//! What is not known gives no hint: no optimizer name, no LR range; no
//! dataset size, no batch or parameter rule; warm-up unknown (the LR series
//! does not start at the first steps and the config has no warm-up or
//! scheduler key) means no warm-up hint. The LR judged is the peak of the
//! logged LR series (a warm-up's target, not its first value), else the
//! optimizer's or the config's. Config keys of Keras, Hugging Face and
//! Lightning are read through [`names::setting`](super::names::setting).
//!
//! Where the numbers come from:
//! - SGD: ResNet's recipe (He et al. 2016), lr 0.1 with momentum 0.9, is an
//!   effective step lr/(1−m) of 1 at batch 256; the linear scaling rule
//!   (Goyal et al. 2017) lets it grow with the batch. Below 1e-4 a plain SGD
//!   step barely moves the weights in a run of ordinary length.
//! - Adam: the default 1e-3 (Kingma & Ba 2015) and the ordinary range of
//!   [`ADAPTIVE_LR_MAX`]; 3e-3 is 3× the default; BERT fine-tuning uses
//!   2e-5–5e-5 (Devlin et al. 2019), so 1e-5 is the low end.
//! - Depth: a sigmoid passes back at most 0.25 of the gradient, and 0.25⁵ ≈
//!   1e-3 is the ratio at which [`gradients`](super::gradients) calls
//!   gradients vanishing (Glorot & Bengio 2010 saw 5-layer sigmoid networks
//!   saturate).
//! - Adam + L2: Loshchilov & Hutter 2019 (in Adam an L2 term is rescaled by
//!   the adaptive step, so it does not decay weights as intended; AdamW
//!   decouples it). Keras 3 optimizers decouple weight decay themselves,
//!   so only the PyTorch model record is judged.
//! - Warm-up: Liu et al. 2020 (RAdam: Adam's early steps have an unreliable
//!   second moment), Xiong et al. 2020 (post-LN transformers need a warm-up;
//!   pre-LN ones train without).

use std::collections::BTreeMap;

use super::context::{ADAPTIVE_LR_MAX, Ctx, Param, Task, param_kind};
use super::fit::MEMORISE_PARAMS_PER_SAMPLE;
use super::mismatch::{cap as capitalise, loss_takes_logits};
use super::names::{Setting, setting, setting_f64};
use super::stats::fmt_num;
use super::{Diagnosis, Evidence, Finding, Kind, Severity};
use crate::record::Layer;

/// Hidden sigmoid/tanh layers from which a plain stack is "deep": the
/// smallest n with 0.25ⁿ below the vanishing ratio of the gradient rules.
pub const DEEP_SATURATING_LAYERS: usize = 5;
/// The largest sensible effective SGD step lr/(1−m) at batch 256 (ResNet's
/// lr 0.1 with momentum 0.9).
pub const SGD_STEP_MAX: f64 = 1.0;
/// The smallest sensible effective SGD step.
pub const SGD_STEP_MIN: f64 = 1e-4;
/// The batch the SGD range is stated for (Goyal et al.'s reference batch).
const SGD_REFERENCE_BATCH: f64 = 256.0;
/// The largest sensible Adam learning rate: 3× the default.
pub const ADAM_LR_MAX: f64 = 3.0 * ADAPTIVE_LR_MAX;
/// The smallest sensible Adam learning rate (below BERT fine-tuning's).
pub const ADAM_LR_MIN: f64 = 1e-5;
/// Optimizer steps per epoch below which a batch is large for its data:
/// a batch of more than a quarter of the training set (small data sets
/// trained at the usual 32–64 per batch stay above it).
pub const MIN_STEPS_PER_EPOCH: f64 = 4.0;
/// Trainable parameters per training sample from which a model without
/// regularisation gets the hint: ten times the ratio at which the
/// overfitting rule blames capacity for an overfit it sees
/// ([`MEMORISE_PARAMS_PER_SAMPLE`]), since here nothing has gone wrong yet
/// (small MLPs on small tabular sets sit at 10–40 and generalise).
pub const FAR_MORE_PARAMS_PER_SAMPLE: f64 = 10.0 * MEMORISE_PARAMS_PER_SAMPLE;
/// Momentum from which the step is ×100 and the update averages ~100 steps.
pub const HIGH_MOMENTUM: f64 = 0.99;
/// Relative slack in range comparisons (0.1/(1−0.9) is 1.0000000000000002).
const SLACK: f64 = 1e-9;

/// One rule of the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rule {
    DeepSaturatingStack,
    Bottleneck,
    ClippedHead,
    LinearStack,
    OverParameterised,
    LrTooHigh,
    LrTooLow,
    BatchVsData,
    AdamL2,
    HighMomentum,
    NoWarmup,
}

impl Rule {
    fn kind(self) -> Kind {
        use Rule::*;
        match self {
            DeepSaturatingStack | Bottleneck | ClippedHead | LinearStack | OverParameterised => {
                Kind::Architecture
            }
            LrTooHigh | LrTooLow | BatchVsData | AdamL2 | HighMomentum | NoWarmup => {
                Kind::Hyperparameters
            }
        }
    }

    /// The raised kinds this problem explains when the run shows them.
    fn explains(self) -> &'static [Kind] {
        use Kind::*;
        match self {
            Rule::DeepSaturatingStack => &[VanishingGradients, SaturatedActivations],
            Rule::Bottleneck | Rule::ClippedHead | Rule::LinearStack => &[Underfitting],
            Rule::OverParameterised => &[Overfitting],
            Rule::LrTooHigh | Rule::HighMomentum | Rule::NoWarmup => {
                &[Divergence, ExplodingGradients, OscillatingLoss]
            }
            Rule::LrTooLow => &[SlowConvergence, Underfitting, UnchangedWeights],
            Rule::BatchVsData | Rule::AdamL2 => &[],
        }
    }
}

/// What one rule found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    pub rule: Rule,
    /// What is wrong, as a clause with the numbers.
    pub what: String,
    /// Why it matters.
    pub why: String,
    pub fix: String,
    pub layer: Option<String>,
    pub metrics: Vec<(&'static str, f64)>,
}

/// The kinds of this module: hints from the model record and the config,
/// shown apart from the findings about what the run did.
pub fn is_hint(kind: Kind) -> bool {
    matches!(kind, Kind::Architecture | Kind::Hyperparameters)
}

/// Adds the `architecture` and `hyperparameters` hints (info only).
pub(crate) fn detect(ctx: &Ctx, out: &mut Diagnosis) {
    let found = problems(ctx);
    for kind in [Kind::Architecture, Kind::Hyperparameters] {
        let mine: Vec<&Problem> = found.iter().filter(|p| p.rule.kind() == kind).collect();
        if !mine.is_empty() {
            out.push(hint(kind, &mine));
        }
    }
}

/// A raised finding that a hint explains (see the module table) and that
/// no finding of the run explains already names the hint as its cause.
pub(crate) fn link_causes(ctx: &Ctx, out: &mut Diagnosis) {
    let found = problems(ctx);
    for f in &mut out.findings {
        if !f.severity.is_raised() || f.caused_by.is_some() {
            continue;
        }
        let Some(p) = found.iter().find(|p| p.rule.explains().contains(&f.kind)) else {
            continue;
        };
        f.caused_by = Some(p.rule.kind());
        f.cause = format!(
            "{} (the {} hint, known before training went wrong). {}",
            capitalise(&p.what),
            p.rule.kind().as_str(),
            f.cause
        );
    }
}

fn hint(kind: Kind, found: &[&Problem]) -> Finding {
    let first = found[0];
    let label = if kind == Kind::Architecture {
        "architecture"
    } else {
        "setting"
    };
    let title = match found.len() {
        1 => capitalise(&first.what),
        n => format!(
            "{}; and {} more {label} hint{}",
            capitalise(&first.what),
            n - 1,
            if n > 2 { "s" } else { "" }
        ),
    };
    let mut metrics = BTreeMap::new();
    for p in found {
        for (k, v) in &p.metrics {
            metrics.insert((*k).to_string(), *v);
        }
    }
    let summary = found
        .iter()
        .enumerate()
        .map(|(i, p)| format!("({}) {}.", i + 1, p.what))
        .collect::<Vec<_>>()
        .join(" ");
    Finding {
        kind,
        caused_by: None,
        severity: Severity::Info,
        onset_step: None,
        title,
        evidence: Evidence {
            series: Vec::new(),
            layer: found.iter().find_map(|p| p.layer.clone()),
            metrics,
            summary: format!("From the model record and the config, before training: {summary}"),
            samples: Vec::new(),
        },
        cause: found
            .iter()
            .map(|p| p.why.as_str())
            .collect::<Vec<_>>()
            .join(" "),
        fixes: found.iter().map(|p| p.fix.clone()).collect(),
    }
}

/// Every problem the model record and the config show, architecture first.
pub(crate) fn problems(ctx: &Ctx) -> Vec<Problem> {
    let mut out = Vec::new();
    if let Some(m) = ctx.view.model.as_ref().filter(|m| !m.layers.is_empty()) {
        let layers = m.layers.as_slice();
        out.extend(deep_saturating_stack(ctx, layers));
        out.extend(bottleneck(ctx, layers));
        out.extend(clipped_head(ctx, layers));
        out.extend(linear_stack(layers));
        out.extend(over_parameterised(ctx, layers));
    }
    out.extend(learning_rate(ctx));
    out.extend(batch_vs_data(ctx));
    out.extend(adam_l2(ctx));
    out.extend(high_momentum(ctx));
    out.extend(no_warmup(ctx));
    out
}

// -- what the model record says ------------------------------------------------

fn lower(s: Option<&str>) -> String {
    s.unwrap_or("").to_ascii_lowercase()
}

fn act(l: &Layer) -> Option<String> {
    l.activation.as_deref().map(str::to_ascii_lowercase)
}

fn is_linear_act(a: &str) -> bool {
    matches!(a, "none" | "linear" | "identity")
}

fn is_norm(l: &Layer) -> bool {
    param_kind(&l.name, l.kind.as_deref()) == Param::Norm
}

fn is_recurrent(l: &Layer) -> bool {
    let k = lower(l.kind.as_deref());
    ["rnn", "lstm", "gru"].iter().any(|r| k.contains(r))
}

fn is_dense(l: &Layer) -> bool {
    let k = lower(l.kind.as_deref());
    k.contains("linear") || k == "dense"
}

/// An attention layer, by type (`MultiheadAttention`,
/// `TransformerEncoderLayer`, `BertLayer`, ...) or name (`self_attn`,
/// `attention`, `transformer.h.0.attn`).
fn is_attention(l: &Layer) -> bool {
    let k = lower(l.kind.as_deref());
    let by_kind = [
        "attention",
        "transformer",
        "encoderlayer",
        "decoderlayer",
        "bertlayer",
    ]
    .iter()
    .any(|w| k.contains(w));
    by_kind
        || l.name
            .to_ascii_lowercase()
            .split('.')
            .any(|c| c.contains("attn") || c.contains("attention") || c.contains("transformer"))
}

fn is_transformer(layers: &[Layer]) -> bool {
    layers.iter().any(is_attention)
}

/// A truthy config or model-record flag (`true`, a non-zero number, `"yes"`).
fn flag(ctx: &Ctx, keys: &[&str]) -> bool {
    let truthy = |v: &serde_json::Value| match v {
        serde_json::Value::Bool(b) => *b,
        serde_json::Value::Number(n) => n.as_f64().is_some_and(|x| x != 0.0),
        serde_json::Value::String(s) => !matches!(
            s.to_ascii_lowercase().as_str(),
            "" | "0" | "false" | "no" | "none"
        ),
        _ => false,
    };
    let model_extra = ctx.view.model.as_ref().map(|m| &m.extra);
    keys.iter().any(|k| {
        ctx.view.config.get(k).is_some_and(truthy)
            || model_extra.and_then(|e| e.get(*k)).is_some_and(truthy)
    })
}

/// Residual connections: attention blocks (residual by design), layers
/// named or typed as residual / shortcut / skip / downsample, a ResNet-like
/// architecture name in the config, or a `residual` flag.
fn has_residual(ctx: &Ctx, layers: &[Layer]) -> bool {
    let words = [
        "residual",
        "shortcut",
        "skip",
        "downsample",
        "resblock",
        "res_block",
    ];
    let named = layers.iter().any(|l| {
        let text = format!("{} {}", l.name, lower(l.kind.as_deref())).to_ascii_lowercase();
        words.iter().any(|w| text.contains(w))
    });
    let arch = ["model", "arch", "architecture", "model_name"]
        .iter()
        .filter_map(|k| ctx.view.config.get(*k).and_then(|v| v.as_str()))
        .any(|s| {
            let s = s.to_ascii_lowercase();
            ["resnet", "residual", "densenet", "unet", "transformer"]
                .iter()
                .any(|w| s.contains(w))
        });
    named
        || arch
        || is_transformer(layers)
        || flag(
            ctx,
            &[
                "residual",
                "residuals",
                "skip_connections",
                "residual_connections",
            ],
        )
}

/// A fine-tune of a pretrained model: its parameter count is not what it
/// learns from this data, and it wants small learning rates.
fn is_fine_tune(ctx: &Ctx) -> bool {
    [
        "model_name_or_path",
        "_name_or_path",
        "pretrained_model_name_or_path",
        "checkpoint",
    ]
    .iter()
    .any(|k| ctx.view.config.get(*k).is_some_and(|v| v.is_string()))
        || flag(ctx, &["pretrained", "fine_tune", "finetune", "fine_tuning"])
}

fn deep_saturating_stack(ctx: &Ctx, layers: &[Layer]) -> Option<Problem> {
    let hidden = &layers[..layers.len() - 1];
    let saturating: Vec<(&Layer, String)> = hidden
        .iter()
        .filter(|l| !is_recurrent(l))
        .filter_map(|l| act(l).map(|a| (l, a)))
        .filter(|(_, a)| matches!(a.as_str(), "sigmoid" | "tanh"))
        .collect();
    let n = saturating.len();
    if n < DEEP_SATURATING_LAYERS || layers.iter().any(is_norm) || has_residual(ctx, layers) {
        return None;
    }
    let sigmoids = saturating.iter().filter(|(_, a)| a == "sigmoid").count();
    let name = match sigmoids {
        0 => "tanh",
        s if s == n => "sigmoid",
        _ => "sigmoid/tanh",
    };
    let bound = if sigmoids == n {
        format!(
            "each sigmoid passes back at most 0.25 of the gradient, so the input layers get at most 0.25^{n} = {} of what the output layer gets",
            fmt_num(0.25f64.powi(n as i32))
        )
    } else {
        "each saturated unit passes back almost no gradient, and the losses multiply layer by layer"
            .into()
    };
    Some(Problem {
        rule: Rule::DeepSaturatingStack,
        what: format!(
            "{n} hidden {name} layers are stacked without normalisation or residual connections"
        ),
        why: format!(
            "In a deep {name} stack {bound}: gradients vanish towards the input and the units saturate (Glorot & Bengio 2010)."
        ),
        fix: "Use ReLU-family activations (ReLU, GELU) in the hidden layers, or add BatchNorm/LayerNorm between them, or residual connections.".into(),
        layer: Some(saturating[0].0.name.clone()),
        metrics: vec![("saturating_layers", n as f64)],
    })
}

fn bottleneck(ctx: &Ctx, layers: &[Layer]) -> Option<Problem> {
    let Task::Classification {
        classes: Some(k), ..
    } = ctx.task
    else {
        return None;
    };
    if k < 2 || ctx.is_language_model() {
        return None;
    }
    let hidden = &layers[..layers.len() - 1];
    let (w, l) = hidden
        .iter()
        .filter(|l| is_dense(l) || is_recurrent(l))
        .filter_map(|l| l.outputs.map(|w| (w, l)))
        .min_by_key(|(w, _)| *w)?;
    if w as usize >= k {
        return None;
    }
    Some(Problem {
        rule: Rule::Bottleneck,
        what: format!("layer {} has {w} units, fewer than the {k} classes", l.name),
        why: format!(
            "Every class score is computed from the {w} numbers of {}, so the {k} scores span at most {} dimensions: the model cannot give every class a score of its own and loses what separates them.",
            l.name,
            w + 1
        ),
        fix: format!(
            "Widen {} to at least the number of classes ({w} → {}).",
            l.name,
            k.max(64)
        ),
        layer: Some(l.name.clone()),
        metrics: vec![("narrowest_units", w as f64), ("classes", k as f64)],
    })
}

fn clipped_head(ctx: &Ctx, layers: &[Layer]) -> Option<Problem> {
    let head = layers.last()?;
    let a = act(head)?;
    if !matches!(a.as_str(), "relu" | "relu6") {
        return None;
    }
    let model = ctx.view.model.as_ref()?;
    let what_clips = if ctx.task == Task::Regression {
        "its predictions can never be negative, and an output stuck at 0 gets no gradient"
    } else if loss_takes_logits(model) {
        "the logits fed to the loss are cut at 0, so the model cannot push a wrong class's score down, and a unit stuck at 0 gets no gradient"
    } else {
        return None;
    };
    Some(Problem {
        rule: Rule::ClippedHead,
        what: format!("the output layer {} ends in a {a}", head.name),
        why: format!("A {a} on the output clips it: {what_clips}."),
        fix: format!(
            "Remove the {a} after {}: feed its raw output to the loss.",
            head.name
        ),
        layer: Some(head.name.clone()),
        metrics: Vec::new(),
    })
}

fn linear_stack(layers: &[Layer]) -> Option<Problem> {
    // Attention and recurrent models apply their activations as functions,
    // which a model record does not see; a record without any nonlinear
    // activation may not see them either.
    if is_transformer(layers)
        || layers.iter().any(is_recurrent)
        || !layers.iter().filter_map(act).any(|a| !is_linear_act(&a))
    {
        return None;
    }
    let (a, b) = layers.windows(2).map(|w| (&w[0], &w[1])).find(|(a, b)| {
        is_dense(a)
            && is_dense(b)
            && act(a).is_some_and(|x| is_linear_act(&x))
            && match (a.outputs, b.inputs) {
                (Some(o), Some(i)) => o == i,
                _ => true,
            }
    })?;
    Some(Problem {
        rule: Rule::LinearStack,
        what: format!(
            "{} and {} are linear layers with no nonlinearity between them",
            a.name, b.name
        ),
        why: format!(
            "Two linear maps compose into one linear map: {} and {} together add parameters but no expressive power.",
            a.name, b.name
        ),
        fix: format!(
            "Add an activation (ReLU, GELU) after {}, or merge it with {} into one layer.",
            a.name, b.name
        ),
        layer: Some(a.name.clone()),
        metrics: Vec::new(),
    })
}

fn over_parameterised(ctx: &Ctx, layers: &[Layer]) -> Option<Problem> {
    let model = ctx.view.model.as_ref()?;
    let n = ctx
        .view
        .dataset("train")
        .and_then(|d| d.n)
        .filter(|n| *n > 0)?;
    let by_layer: Option<u64> = layers
        .iter()
        .filter(|l| l.trainable != Some(false))
        .map(|l| l.params)
        .sum();
    let params = by_layer.filter(|p| *p > 0).or(model.total_params)?;
    let per_sample = params as f64 / n as f64;
    if per_sample <= FAR_MORE_PARAMS_PER_SAMPLE || is_fine_tune(ctx) {
        return None;
    }
    let opt = model.optimizer.as_ref();
    let opt_name = lower(opt.and_then(|o| o.name.as_deref()));
    let wd = opt
        .and_then(|o| o.weight_decay)
        .or_else(|| setting_f64(&ctx.view.config, Setting::WeightDecay))
        // AdamW decays weights by default (0.01).
        .unwrap_or(if opt_name.contains("adamw") {
            0.01
        } else {
            0.0
        });
    let dropout = setting_f64(&ctx.view.config, Setting::Dropout).unwrap_or(0.0) > 0.0
        || layers.iter().any(|l| {
            lower(l.kind.as_deref()).contains("dropout")
                || l.extra
                    .get("dropout")
                    .and_then(|v| v.as_f64())
                    .is_some_and(|p| p > 0.0)
        });
    let other = flag(
        ctx,
        &[
            "augment",
            "augmentation",
            "data_augmentation",
            "mixup",
            "cutmix",
            "label_smoothing",
            "early_stopping",
            "patience",
        ],
    );
    if wd > 0.0 || dropout || other {
        return None;
    }
    Some(Problem {
        rule: Rule::OverParameterised,
        what: format!(
            "{} trainable parameters for {} training samples ({} per sample) with no weight decay, dropout or augmentation",
            super::fmt_step(params),
            super::fmt_step(n),
            fmt_num(per_sample)
        ),
        why: "With far more parameters than samples and nothing to restrain them, the model can memorise the training set (Zhang et al. 2017 fit random labels with such models) instead of learning what generalises.".into(),
        fix: "Regularise from the start: weight decay 1e-4…1e-2 (AdamW), dropout 0.1–0.5 or data augmentation, with early stopping on the validation metric; or use a smaller model or more data.".into(),
        layer: None,
        metrics: vec![("params_per_sample", per_sample)],
    })
}

// -- what the optimizer and the config say --------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opt {
    Sgd,
    Adam,
}

/// SGD or the Adam family (Adam, AdamW, NAdam, RAdam, HF's `adamw_torch`);
/// other optimizers have ranges of their own and are not judged.
fn opt_kind(ctx: &Ctx) -> Option<(Opt, String)> {
    let name = ctx.optimizer_name()?;
    let kind = if name.contains("adam") {
        Opt::Adam
    } else if name.contains("sgd") {
        Opt::Sgd
    } else {
        return None;
    };
    Some((kind, name))
}

/// Momentum (β1 for Adam): the model record's, else the config's.
fn momentum(ctx: &Ctx) -> Option<f64> {
    ctx.view
        .model
        .as_ref()
        .and_then(|m| m.optimizer.as_ref())
        .and_then(|o| o.momentum)
        .or_else(|| setting_f64(&ctx.view.config, Setting::Momentum))
        .filter(|m| m.is_finite() && (0.0..1.0).contains(m))
}

/// Samples per optimizer step (batch × gradient accumulation).
fn batch(ctx: &Ctx) -> Option<f64> {
    let b = setting_f64(&ctx.view.config, Setting::BatchSize).filter(|b| *b >= 1.0)?;
    let accumulate = setting_f64(&ctx.view.config, Setting::GradAccumulation)
        .filter(|a| *a >= 1.0)
        .unwrap_or(1.0);
    Some(b * accumulate)
}

/// An LR outside the sensible range for its optimizer (too high or too low),
/// if the optimizer and the LR are known.
pub(crate) fn learning_rate(ctx: &Ctx) -> Option<Problem> {
    let (opt, name) = opt_kind(ctx)?;
    let lr = ctx.peak_lr().filter(|v| v.is_finite() && *v > 0.0)?;
    let m = if opt == Opt::Sgd {
        momentum(ctx).unwrap_or(0.0)
    } else {
        0.0
    };
    let step = lr / (1.0 - m);
    let (lo, hi) = match opt {
        Opt::Sgd => (
            SGD_STEP_MIN,
            SGD_STEP_MAX * batch(ctx).map_or(1.0, |b| (b / SGD_REFERENCE_BATCH).max(1.0)),
        ),
        Opt::Adam => (ADAM_LR_MIN, ADAM_LR_MAX),
    };
    let described = match opt {
        Opt::Sgd if m > 0.0 => format!(
            "learning rate {} for {name} with momentum {} (an effective step lr/(1−m) of {})",
            fmt_num(lr),
            fmt_num(m),
            fmt_num(step)
        ),
        _ => format!("learning rate {} for {name}", fmt_num(lr)),
    };
    let range = format!("{}–{}", fmt_num(lo), fmt_num(hi));
    let (rule, what, why, fix) = if step > hi * (1.0 + SLACK) {
        (
            Rule::LrTooHigh,
            format!("{described} is above the sensible range {range}"),
            "A step this large overshoots the minimum the gradient points to: the loss jumps up instead of down, and the run diverges or oscillates.".to_string(),
            match opt {
                Opt::Sgd => format!(
                    "Lower the learning rate to at most {} (keep lr/(1−m) ≤ {}).",
                    fmt_num(hi * (1.0 - m)),
                    fmt_num(hi)
                ),
                Opt::Adam => format!(
                    "Lower the learning rate to 1e-4–{} ({name}'s default is 1e-3), with a warm-up for a large model.",
                    fmt_num(ADAPTIVE_LR_MAX)
                ),
            },
        )
    } else if step < lo * (1.0 - SLACK) && !(opt == Opt::Adam && is_fine_tune(ctx)) {
        (
            Rule::LrTooLow,
            format!("{described} is below the sensible range {range}"),
            "Steps this small barely move the weights: the loss falls far more slowly than the model could learn.".to_string(),
            format!(
                "Use a learning rate in {range} for {name} (try an LR range test: increase it until the loss stops falling)."
            ),
        )
    } else {
        return None;
    };
    let mut metrics = vec![("lr", lr)];
    if m > 0.0 {
        metrics.push(("effective_step", step));
    }
    Some(Problem {
        rule,
        what,
        why,
        fix,
        layer: None,
        metrics,
    })
}

fn batch_vs_data(ctx: &Ctx) -> Option<Problem> {
    let b = batch(ctx)?;
    let n = ctx
        .view
        .dataset("train")
        .and_then(|d| d.n)
        .filter(|n| *n > 0)? as f64;
    let steps = n / b;
    let (what, why) = if b > n {
        (
            format!(
                "the batch of {} samples is larger than the {} training samples",
                fmt_num(b),
                fmt_num(n)
            ),
            "Every step is a full-batch step: one update per epoch, and none of the noise that helps SGD find minima that generalise.",
        )
    } else if steps < MIN_STEPS_PER_EPOCH {
        (
            format!(
                "a batch of {} samples leaves only {} optimizer steps per epoch over {} training samples",
                fmt_num(b),
                fmt_num(steps.floor()),
                fmt_num(n)
            ),
            "So few updates per epoch make a fixed epoch budget a small number of steps, and a batch close to the whole set loses SGD's helpful noise (Keskar et al. 2017).",
        )
    } else {
        return None;
    };
    Some(Problem {
        rule: Rule::BatchVsData,
        what,
        why: why.into(),
        fix: format!(
            "Use a batch of at most {} samples (≥ {} steps per epoch), or train for more epochs.",
            fmt_num((n / MIN_STEPS_PER_EPOCH).floor().max(1.0)),
            fmt_num(MIN_STEPS_PER_EPOCH)
        ),
        layer: None,
        metrics: vec![("batch_size", b), ("steps_per_epoch", steps)],
    })
}

fn adam_l2(ctx: &Ctx) -> Option<Problem> {
    let model = ctx.view.model.as_ref()?;
    let opt = model.optimizer.as_ref()?;
    let name = lower(opt.name.as_deref());
    let framework = model
        .extra
        .get("framework")
        .or_else(|| ctx.view.config.get("framework"))
        .and_then(|v| v.as_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    let wd = opt.weight_decay.filter(|w| w.is_finite() && *w > 0.0)?;
    if !name.contains("adam")
        || name.contains("adamw")
        || ["keras", "tensorflow", "tf", "jax"]
            .iter()
            .any(|f| framework.contains(f))
    {
        return None;
    }
    Some(Problem {
        rule: Rule::AdamL2,
        what: format!("{name} with weight_decay {} (an L2 penalty, not AdamW's decoupled decay)", fmt_num(wd)),
        why: "Adam divides the L2 term's gradient by the same adaptive factor as the loss's, so weights with large gradients are barely decayed: the regularisation is weaker and uneven (Loshchilov & Hutter 2019).".into(),
        fix: format!("Use AdamW with weight_decay {} (typically 0.01–0.1) instead of Adam's L2 weight_decay.", fmt_num((wd * 10.0).clamp(1e-2, 0.1))),
        layer: None,
        metrics: vec![("weight_decay", wd)],
    })
}

fn high_momentum(ctx: &Ctx) -> Option<Problem> {
    let m = momentum(ctx)?;
    if m < HIGH_MOMENTUM {
        return None;
    }
    let adam = opt_kind(ctx).is_some_and(|(o, _)| o == Opt::Adam);
    let name = if adam { "β1" } else { "momentum" };
    Some(Problem {
        rule: Rule::HighMomentum,
        what: format!("{name} {} is very high", fmt_num(m)),
        why: format!(
            "With {name} {} the update averages the last ~{} gradients{}: it keeps moving long after the gradient has turned, so the loss overshoots and oscillates.",
            fmt_num(m),
            fmt_num((1.0 / (1.0 - m)).round()),
            if adam {
                ""
            } else {
                " and the step is that many times the learning rate"
            }
        ),
        fix: format!("Use {name} 0.9 (0.95 at most), and keep the learning rate in range."),
        layer: None,
        metrics: vec![("momentum", m)],
    })
}

/// Whether the LR warms up: from the logged LR series when it shows the
/// first steps, else from the config's warm-up or scheduler keys; `None`
/// when neither tells.
fn warms_up(ctx: &Ctx) -> Option<bool> {
    if ctx.in_warmup_from_start() {
        return Some(true);
    }
    if let Some(lr) = ctx.lr {
        let pts: Vec<(u64, f64)> = lr
            .series
            .steps
            .iter()
            .copied()
            .zip(lr.series.values.iter().copied())
            .filter(|(_, v)| v.is_finite() && *v > 0.0)
            .collect();
        if pts.len() >= 3 && pts[0].0 <= 10 {
            let window = &pts[..(pts.len() / 10).max(3)];
            let first = pts[0].1;
            if window.iter().all(|(_, v)| *v <= first * 1.05) {
                return Some(false);
            }
            if window.iter().any(|(_, v)| *v >= 1.5 * first) {
                return Some(true);
            }
        }
    }
    let config = &ctx.view.config;
    if let Some(v) = setting(config, Setting::Warmup) {
        if let Some(b) = v.as_bool() {
            return Some(b);
        }
        if let Some(x) = setting_f64(config, Setting::Warmup) {
            return Some(x > 0.0);
        }
    }
    let scheduler = setting(config, Setting::Scheduler)?
        .as_str()?
        .to_ascii_lowercase();
    if [
        "warmup",
        "noam",
        "inverse_sqrt",
        "onecycle",
        "one_cycle",
        "triangular",
    ]
    .iter()
    .any(|w| scheduler.contains(w))
    {
        Some(true)
    } else if matches!(scheduler.as_str(), "constant" | "none" | "fixed") {
        Some(false)
    } else {
        None
    }
}

fn no_warmup(ctx: &Ctx) -> Option<Problem> {
    let layers = &ctx.view.model.as_ref()?.layers;
    if !is_transformer(layers) || flag(ctx, &["norm_first", "pre_norm", "pre_ln"]) {
        return None;
    }
    if warms_up(ctx)? {
        return None;
    }
    let layer = layers
        .iter()
        .find(|l| is_attention(l))
        .map(|l| l.name.clone());
    Some(Problem {
        rule: Rule::NoWarmup,
        what: "a transformer is trained without a learning-rate warm-up".into(),
        why: "In its first steps Adam's second-moment estimate is unreliable and a post-LN transformer's gradients near the output are large, so the full learning rate from step 0 often blows the run up early (Liu et al. 2020; Xiong et al. 2020).".into(),
        fix: "Warm the learning rate up linearly over the first 1–10% of the steps (e.g. warmup_ratio=0.06, get_linear_schedule_with_warmup), or use pre-LN layers (norm_first=True).".into(),
        layer,
        metrics: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::testutil::{curve, healthy, vanishing_grads, view};
    use super::super::{Diagnosis, Kind, RunView, Series, Severity, diagnose};
    use super::*;
    use crate::record::{DatasetRecord, ModelRecord, Optimizer};

    fn layer(name: &str, kind: &str, inputs: u64, outputs: u64, act: &str) -> Layer {
        Layer {
            name: name.into(),
            kind: Some(kind.into()),
            inputs: Some(inputs),
            outputs: Some(outputs),
            params: Some(inputs * outputs + outputs),
            activation: Some(act.into()),
            trainable: Some(true),
            ..Default::default()
        }
    }

    /// `depth` hidden Linear layers of 64 units with `act`, and a 10-way head.
    fn mlp(depth: usize, act: &str) -> Vec<Layer> {
        let mut layers: Vec<Layer> = (1..=depth)
            .map(|i| layer(&format!("fc{i}"), "Linear", 64, 64, act))
            .collect();
        layers.push(layer("head", "Linear", 64, 10, "none"));
        layers
    }

    fn model(layers: Vec<Layer>, loss: &str, opt: Option<(&str, f64, f64, f64)>) -> ModelRecord {
        ModelRecord {
            layers,
            loss: Some(loss.into()),
            optimizer: opt.map(|(name, lr, momentum, weight_decay)| Optimizer {
                name: Some(name.into()),
                lr: Some(lr),
                momentum: Some(momentum),
                weight_decay: Some(weight_decay),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A healthy run (LR 1e-3 logged) with `m` and `config`, a training set
    /// of `n` samples in 10 classes.
    fn run(m: ModelRecord, config: serde_json::Value, n: u64) -> RunView {
        let mut v = healthy(10, 20);
        v.model = Some(m);
        v.config = config;
        v.datasets.push(DatasetRecord {
            split: "train".into(),
            n: Some(n),
            class_counts: Some((0..10).map(|c| (c.to_string(), json!(n / 10))).collect()),
            ..Default::default()
        });
        v
    }

    fn rules(v: &RunView) -> Vec<Rule> {
        problems(&super::super::context::Ctx::new(v))
            .into_iter()
            .map(|p| p.rule)
            .collect()
    }

    fn adam() -> Option<(&'static str, f64, f64, f64)> {
        Some(("adam", 1e-3, 0.9, 0.0))
    }

    /// A run of `layers` trained with cross-entropy and Adam at 1e-3,
    /// nothing else in the config, on 5000 samples.
    fn plain_run(layers: Vec<Layer>) -> RunView {
        run(model(layers, "cross_entropy", adam()), json!({}), 5000)
    }

    fn plain(layers: Vec<Layer>) -> Vec<Rule> {
        rules(&plain_run(layers))
    }

    #[test]
    fn depth_threshold_is_where_sigmoid_gradients_vanish() {
        let n = DEEP_SATURATING_LAYERS as i32;
        assert!(0.25f64.powi(n) < super::super::gradients::VANISH_RATIO);
        assert!(0.25f64.powi(n - 1) >= super::super::gradients::VANISH_RATIO);
    }

    #[test]
    fn deep_sigmoid_stack_without_normalisation_or_residuals() {
        let deep = plain_run(mlp(6, "sigmoid"));
        assert_eq!(rules(&deep), [Rule::DeepSaturatingStack]);
        let d = diagnose(&deep);
        let f = d.get(Kind::Architecture).expect("hint");
        assert_eq!(f.severity, Severity::Info);
        assert!(f.title.contains("6 hidden sigmoid layers"), "{}", f.title);
        assert_eq!(f.evidence.layer.as_deref(), Some("fc1"));
        assert_eq!(d.raised().count(), 0, "a hint is never raised");
        // Four layers are not deep; BatchNorm or residuals make six fine.
        let shallow = plain_run(mlp(4, "tanh"));
        assert!(rules(&shallow).is_empty());
        let mut bn = mlp(6, "none");
        for i in (1..=6).rev() {
            let mut norm = layer(&format!("bn{i}"), "BatchNorm1d", 64, 64, "sigmoid");
            norm.inputs = None;
            norm.outputs = None;
            bn.insert(i, norm);
        }
        let with_bn = plain_run(bn);
        assert!(rules(&with_bn).is_empty(), "{:?}", rules(&with_bn));
        let mut res = mlp(6, "sigmoid");
        for (i, l) in res.iter_mut().take(6).enumerate() {
            l.name = format!("blocks.{i}.residual.fc");
        }
        assert!(plain(res).is_empty());
        let flagged = run(
            model(mlp(6, "sigmoid"), "cross_entropy", adam()),
            json!({"residual": true}),
            5000,
        );
        assert!(rules(&flagged).is_empty());
    }

    #[test]
    fn bottleneck_narrower_than_the_classes() {
        let mut layers = mlp(2, "relu");
        layers[1].outputs = Some(4);
        layers[2].inputs = Some(4);
        let v = plain_run(layers.clone());
        assert_eq!(rules(&v), [Rule::Bottleneck]);
        let f = diagnose(&v).get(Kind::Architecture).cloned().unwrap();
        assert!(
            f.title
                .contains("fc2 has 4 units, fewer than the 10 classes"),
            "{}",
            f.title
        );
        assert_eq!(f.evidence.metrics["narrowest_units"], 4.0);
        layers[1].outputs = Some(16);
        assert!(plain(layers).is_empty());
        // A language model's hidden size is always below its vocabulary.
        let lm = vec![
            layer("embed", "Embedding", 1000, 64, "none"),
            layer("rnn", "LSTM", 64, 64, "none"),
            layer("decoder", "Linear", 64, 1000, "none"),
        ];
        let mut v = healthy(10, 20);
        v.model = Some(model(lm, "cross_entropy", adam()));
        assert!(!rules(&v).contains(&Rule::Bottleneck));
    }

    #[test]
    fn relu_on_the_output_clips_logits_and_regression_targets() {
        let mut layers = mlp(2, "relu");
        layers[2].activation = Some("relu".into());
        let v = plain_run(layers.clone());
        assert_eq!(rules(&v), [Rule::ClippedHead]);
        let mut reg = healthy(10, 20);
        reg.model = Some(model(layers.clone(), "mse", adam()));
        assert_eq!(rules(&reg), [Rule::ClippedHead]);
        // BCE on probabilities after a ReLU is the mismatch rule's business;
        // a linear head clips nothing.
        let bce = run(model(layers.clone(), "bce", adam()), json!({}), 5000);
        assert!(!rules(&bce).contains(&Rule::ClippedHead));
        layers[2].activation = Some("none".into());
        assert!(plain(layers).is_empty());
    }

    #[test]
    fn linear_layers_stacked_without_a_nonlinearity() {
        let mut layers = mlp(2, "relu");
        layers[1].activation = Some("none".into());
        let v = plain_run(layers.clone());
        assert_eq!(rules(&v), [Rule::LinearStack]);
        assert!(
            problems(&super::super::context::Ctx::new(&v))[0]
                .what
                .starts_with("fc2 and head")
        );
        // Linear → BatchNorm → Linear has the norm in between; mismatched
        // sizes are not one after the other.
        let mut bn = layers.clone();
        let mut norm = layer("bn", "BatchNorm1d", 64, 64, "relu");
        norm.inputs = None;
        bn.insert(2, norm);
        assert!(plain(bn).is_empty());
        let mut apart = layers.clone();
        apart[2].inputs = Some(128);
        assert!(plain(apart).is_empty());
        // A transformer's feed-forward applies its activation as a function.
        let ffn = vec![
            layer("embed", "Embedding", 100, 32, "none"),
            layer("enc.0.self_attn", "MultiheadAttention", 32, 32, "none"),
            layer("enc.0.linear1", "Linear", 32, 64, "none"),
            layer("enc.0.linear2", "Linear", 64, 32, "none"),
            layer("head", "Linear", 32, 10, "none"),
        ];
        let mut t = run(
            model(ffn, "cross_entropy", adam()),
            json!({"warmup_steps": 100}),
            5000,
        );
        t.scalars.remove("lr");
        assert!(rules(&t).is_empty(), "{:?}", rules(&t));
    }

    #[test]
    fn far_more_parameters_than_samples_without_regularisation() {
        let wide = |units: u64| {
            vec![
                layer("fc1", "Linear", 64, units, "relu"),
                layer("head", "Linear", units, 10, "none"),
            ]
        };
        // 64·2048 + 2048·10 ≈ 154k parameters for 500 samples: 307 each.
        let v = run(model(wide(2048), "cross_entropy", adam()), json!({}), 500);
        assert_eq!(rules(&v), [Rule::OverParameterised]);
        // 64 units: 4.8k parameters, 10 per sample.
        assert!(
            rules(&run(
                model(wide(64), "cross_entropy", adam()),
                json!({}),
                500
            ))
            .is_empty()
        );
        for config in [
            json!({"dropout": 0.3}),
            json!({"augment": true}),
            json!({"model_name_or_path": "bert-base-uncased"}),
        ] {
            let v = run(
                model(wide(2048), "cross_entropy", adam()),
                config.clone(),
                500,
            );
            assert!(!rules(&v).contains(&Rule::OverParameterised), "{config}");
        }
        // Weight decay from the config when the record does not say.
        let mut m = model(wide(2048), "cross_entropy", adam());
        m.optimizer.as_mut().unwrap().weight_decay = None;
        assert!(rules(&run(m, json!({"weight_decay": 1e-4}), 500)).is_empty());
        let adamw = run(
            model(
                wide(2048),
                "cross_entropy",
                Some(("adamw", 1e-3, 0.9, 0.01)),
            ),
            json!({}),
            500,
        );
        assert!(rules(&adamw).is_empty());
        // Frozen layers do not count.
        let mut frozen = wide(2048);
        frozen[0].trainable = Some(false);
        assert!(rules(&run(model(frozen, "cross_entropy", adam()), json!({}), 500)).is_empty());
    }

    /// The rules for the optimizer `opt` with `lr` logged and `config`.
    fn with_lr(opt: (&str, f64, f64, f64), config: serde_json::Value) -> Vec<Rule> {
        rules(&at_lr(mlp(2, "relu"), opt, config))
    }

    /// A run of `layers` trained with cross-entropy and `opt`, its LR
    /// logged as a constant, and `config`.
    fn at_lr(layers: Vec<Layer>, opt: (&str, f64, f64, f64), config: serde_json::Value) -> RunView {
        let mut v = run(model(layers, "cross_entropy", Some(opt)), config, 5000);
        v.scalars
            .insert("lr".into(), Series::from_points(curve(200, 1, |_| opt.1)));
        v
    }

    #[test]
    fn learning_rate_against_its_optimizer() {
        // ResNet's SGD recipe sits at the top of the range, exactly.
        assert!(with_lr(("sgd", 0.1, 0.9, 0.0), json!({})).is_empty());
        assert_eq!(
            with_lr(("sgd", 1.0, 0.9, 0.0), json!({})),
            [Rule::LrTooHigh]
        );
        assert_eq!(
            with_lr(("sgd", 1.5, 0.0, 0.0), json!({})),
            [Rule::LrTooHigh]
        );
        assert_eq!(
            with_lr(("sgd", 1e-5, 0.0, 0.0), json!({})),
            [Rule::LrTooLow]
        );
        // Momentum makes a small LR a sensible step.
        assert!(with_lr(("sgd", 5e-5, 0.9, 0.0), json!({})).is_empty());
        // The linear scaling rule: lr/(1−m) = 3 is fine at batch 1024.
        assert_eq!(
            with_lr(("sgd", 0.3, 0.9, 0.0), json!({"batch_size": 256})),
            [Rule::LrTooHigh]
        );
        assert!(with_lr(("sgd", 0.3, 0.9, 0.0), json!({"batch_size": 1024})).is_empty());
        assert!(with_lr(("adam", 3e-3, 0.9, 0.0), json!({})).is_empty());
        assert_eq!(
            with_lr(("adamw", 1e-2, 0.9, 0.01), json!({})),
            [Rule::LrTooHigh]
        );
        assert_eq!(
            with_lr(("adam", 5e-6, 0.9, 0.0), json!({})),
            [Rule::LrTooLow]
        );
        // Fine-tuning a pretrained model at 5e-6 is ordinary.
        assert!(
            with_lr(
                ("adamw", 5e-6, 0.9, 0.01),
                json!({"model_name_or_path": "gpt2"})
            )
            .is_empty()
        );
        // Other optimizers have ranges of their own.
        assert!(with_lr(("rmsprop", 0.1, 0.0, 0.0), json!({})).is_empty());
        assert!(with_lr(("adadelta", 1.0, 0.0, 0.0), json!({})).is_empty());
        // The peak of the logged series is judged, not a warm-up's start.
        let mut v = run(
            model(
                mlp(2, "relu"),
                "cross_entropy",
                Some(("adam", 1e-6, 0.9, 0.0)),
            ),
            json!({}),
            5000,
        );
        v.scalars.insert(
            "lr".into(),
            Series::from_points(curve(200, 1, |i| 1e-3 * (i.min(20) as f64 + 1.0) / 21.0)),
        );
        assert!(rules(&v).is_empty());
        let f = {
            let v = at_lr(mlp(2, "relu"), ("sgd", 1.0, 0.9, 0.0), json!({}));
            diagnose(&v).get(Kind::Hyperparameters).cloned().unwrap()
        };
        assert!(
            f.title.contains("effective step lr/(1−m) of 10"),
            "{}",
            f.title
        );
        assert!((f.evidence.metrics["effective_step"] - 10.0).abs() < 1e-9);
        assert!(f.fixes[0].contains("at most 0.1"), "{:?}", f.fixes);
    }

    #[test]
    fn batch_size_against_the_training_set() {
        let rules_for = |config: serde_json::Value, n: u64| {
            rules(&run(
                model(mlp(2, "relu"), "cross_entropy", adam()),
                config,
                n,
            ))
        };
        assert_eq!(
            rules_for(json!({"batch_size": 2000}), 1000),
            [Rule::BatchVsData]
        );
        assert_eq!(
            rules_for(json!({"batch_size": 64}), 200),
            [Rule::BatchVsData]
        );
        assert!(rules_for(json!({"batch_size": 32}), 200).is_empty());
        // HF: per device × accumulation.
        assert_eq!(
            rules_for(
                json!({"per_device_train_batch_size": 16, "gradient_accumulation_steps": 8}),
                400
            ),
            [Rule::BatchVsData]
        );
        assert!(rules_for(json!({"per_device_train_batch_size": 16}), 400).is_empty());
        assert!(
            !rules_for(json!({}), 10).contains(&Rule::BatchVsData),
            "no batch size, no hint"
        );
    }

    #[test]
    fn adam_with_l2_weight_decay_instead_of_adamw() {
        let rules_for = |opt: (&str, f64, f64, f64), extra: Option<&str>| {
            let mut m = model(mlp(2, "relu"), "cross_entropy", Some(opt));
            if let Some(f) = extra {
                m.extra.insert("framework".into(), json!(f));
            }
            rules(&run(m, json!({}), 5000))
        };
        assert_eq!(rules_for(("adam", 1e-3, 0.9, 1e-4), None), [Rule::AdamL2]);
        assert!(rules_for(("adamw", 1e-3, 0.9, 1e-2), None).is_empty());
        assert!(rules_for(("adam", 1e-3, 0.9, 0.0), None).is_empty());
        assert!(rules_for(("sgd", 0.01, 0.9, 5e-4), None).is_empty());
        // Keras optimizers decouple weight decay themselves.
        assert!(rules_for(("adam", 1e-3, 0.9, 1e-4), Some("keras")).is_empty());
    }

    #[test]
    fn momentum_of_099_or_more() {
        assert_eq!(
            with_lr(("sgd", 1e-3, 0.99, 0.0), json!({})),
            [Rule::HighMomentum]
        );
        assert!(with_lr(("sgd", 1e-2, 0.95, 0.0), json!({})).is_empty());
        let f = {
            let v = at_lr(mlp(2, "relu"), ("sgd", 1e-3, 0.995, 0.0), json!({}));
            diagnose(&v).get(Kind::Hyperparameters).cloned().unwrap()
        };
        assert!(f.cause.contains("~200 gradients"), "{}", f.cause);
        // Keras' beta_1 in the config, for Adam.
        let mut v = run(
            model(mlp(2, "relu"), "cross_entropy", None),
            json!({"optimizer": "adam", "beta_1": 0.995}),
            5000,
        );
        v.scalars
            .insert("lr".into(), Series::from_points(curve(200, 1, |_| 1e-3)));
        assert_eq!(rules(&v), [Rule::HighMomentum]);
    }

    fn transformer() -> Vec<Layer> {
        vec![
            layer("embed", "Embedding", 100, 32, "none"),
            layer(
                "encoder.layers.0.self_attn",
                "MultiheadAttention",
                32,
                32,
                "none",
            ),
            layer("encoder.layers.0.linear1", "Linear", 32, 64, "none"),
            layer("encoder.layers.0.linear2", "Linear", 64, 32, "none"),
            layer("head", "Linear", 32, 10, "none"),
        ]
    }

    /// The rules of a transformer trained with Adam at 1e-3, the LR series
    /// `lr` (if any) logged, and `config`.
    fn transformer_rules(lr: Option<Vec<(u64, f64)>>, config: serde_json::Value) -> Vec<Rule> {
        let mut v = run(model(transformer(), "cross_entropy", adam()), config, 5000);
        v.scalars.remove("lr");
        if let Some(pts) = lr {
            v.scalars.insert("lr".into(), Series::from_points(pts));
        }
        rules(&v)
    }

    #[test]
    fn transformer_without_warmup() {
        let constant = curve(200, 1, |_| 1e-3);
        assert_eq!(
            transformer_rules(Some(constant.clone()), json!({})),
            [Rule::NoWarmup]
        );
        let warm = curve(200, 1, |i| 1e-3 * (i.min(19) + 1) as f64 / 20.0);
        assert!(transformer_rules(Some(warm), json!({})).is_empty());
        // The series starts late (HF logs every 500 steps): unknown, so no
        // hint, unless the config says.
        let late: Vec<(u64, f64)> = (1..20).map(|i| (i * 500, 1e-3)).collect();
        assert!(transformer_rules(Some(late.clone()), json!({})).is_empty());
        assert_eq!(
            transformer_rules(Some(late), json!({"warmup_steps": 0})),
            [Rule::NoWarmup]
        );
        assert!(
            transformer_rules(None, json!({})).is_empty(),
            "unknown: no hint"
        );
        assert!(transformer_rules(None, json!({"warmup_ratio": 0.1})).is_empty());
        assert_eq!(
            transformer_rules(None, json!({"warmup_ratio": 0.0})),
            [Rule::NoWarmup]
        );
        assert_eq!(
            transformer_rules(None, json!({"lr_scheduler_type": "constant"})),
            [Rule::NoWarmup]
        );
        assert!(
            transformer_rules(None, json!({"lr_scheduler_type": "cosine_with_warmup"})).is_empty()
        );
        assert!(
            transformer_rules(None, json!({"scheduler": "cosine"})).is_empty(),
            "unknown"
        );
        // Pre-LN transformers train without a warm-up.
        assert!(transformer_rules(Some(constant.clone()), json!({"norm_first": true})).is_empty());
        // An MLP at a constant LR needs none.
        let mut v = plain_run(mlp(2, "relu"));
        v.scalars.insert("lr".into(), Series::from_points(constant));
        assert!(rules(&v).is_empty());
        // Recognised by name too (GPT-2's `transformer.h.0.attn.c_attn`).
        let mut named = transformer();
        named[1].kind = Some("Conv1D".into());
        named[1].name = "transformer.h.0.attn.c_attn".into();
        assert!(is_transformer(&named));
        assert!(!is_transformer(&mlp(3, "relu")));
    }

    #[test]
    fn one_finding_per_kind_lists_every_problem() {
        let mut layers = mlp(6, "sigmoid");
        layers[5].outputs = Some(4);
        layers[6].inputs = Some(4);
        let v = at_lr(
            layers,
            ("adam", 0.5, 0.995, 1e-4),
            json!({"batch_size": 4096}),
        );
        let d = diagnose(&v);
        let hints: Vec<_> = d.findings.iter().filter(|f| is_hint(f.kind)).collect();
        assert_eq!(hints.len(), 2);
        let a = d.get(Kind::Architecture).unwrap();
        assert!(
            a.title.ends_with("; and 1 more architecture hint"),
            "{}",
            a.title
        );
        assert_eq!(a.fixes.len(), 2);
        assert!(
            a.evidence.summary.contains("(1) 6 hidden sigmoid")
                && a.evidence.summary.contains("(2) layer fc6 has 4 units"),
            "{}",
            a.evidence.summary
        );
        let h = d.get(Kind::Hyperparameters).unwrap();
        assert_eq!(h.fixes.len(), 4, "{:?}", h.fixes);
        assert!(
            h.title.ends_with("; and 3 more setting hints"),
            "{}",
            h.title
        );
        assert!(
            hints
                .iter()
                .all(|f| f.severity == Severity::Info && f.caused_by.is_none())
        );
        // Nothing known, nothing hinted.
        let d = diagnose(&healthy(10, 20));
        assert!(d.get(Kind::Architecture).is_none() && d.get(Kind::Hyperparameters).is_none());
    }

    /// Gradients that fall ×1000 per layer towards the input while the loss
    /// stays at chance, over the model `layers`.
    fn vanishing_run(layers: Vec<Layer>) -> Diagnosis {
        let series = vanishing_grads(&[
            "grad_norm/fc1",
            "grad_norm/fc3",
            "grad_norm/fc6",
            "grad_norm/head",
        ]);
        let mut v = view(&series);
        v.model = Some(model(
            layers,
            "cross_entropy",
            Some(("sgd", 0.05, 0.9, 0.0)),
        ));
        diagnose(&v)
    }

    #[test]
    fn vanishing_gradients_in_a_deep_sigmoid_stack_name_the_architecture() {
        let d = vanishing_run(mlp(6, "sigmoid"));
        let f = d.get(Kind::VanishingGradients).expect("vanishing");
        assert!(f.severity.is_raised());
        assert_eq!(f.caused_by, Some(Kind::Architecture));
        assert!(f.cause.starts_with("6 hidden sigmoid layers are stacked without normalisation or residual connections (the architecture hint"), "{}", f.cause);
        assert_eq!(d.get(Kind::Architecture).unwrap().severity, Severity::Info);
        // The same gradients in a ReLU stack: no hint, no such cause.
        let d = vanishing_run(mlp(6, "relu"));
        let f = d.get(Kind::VanishingGradients).expect("vanishing");
        assert_eq!(f.caused_by, None);
        assert!(d.get(Kind::Architecture).is_none());
    }

    #[test]
    fn divergence_after_adam_without_warmup_on_a_transformer_names_the_setting() {
        let mut v = at_lr(transformer(), ("adam", 1.0, 0.9, 0.0), json!({}));
        v.scalars.insert(
            "train/loss".into(),
            Series::from_points(curve(200, 1, |i| {
                if i < 30 {
                    2.3 * 1.3f64.powi(i as i32)
                } else {
                    f64::NAN
                }
            })),
        );
        let d = diagnose(&v);
        let f = d.get(Kind::Divergence).expect("divergence");
        assert!(f.severity.is_raised());
        assert_eq!(f.caused_by, Some(Kind::Hyperparameters));
        assert!(f.cause.contains("(the hyperparameters hint"), "{}", f.cause);
        let h = d.get(Kind::Hyperparameters).unwrap();
        assert_eq!(h.severity, Severity::Info);
        assert!(
            h.title.contains("above the sensible range")
                && h.evidence
                    .summary
                    .contains("without a learning-rate warm-up"),
            "{h:?}"
        );
        // A raised finding another finding explains keeps that cause.
        let mut nan_inputs = v.clone();
        nan_inputs.datasets[0].missing = Some(40);
        let d = diagnose(&nan_inputs);
        assert_eq!(
            d.get(Kind::Divergence).unwrap().caused_by,
            Some(Kind::MissingValues)
        );
    }
}
