//! Loss / output-activation mismatch (research §1 "Bad input scaling /
//! output-range mismatch"; TDC "redundant softmax", DD "out of range").
//!
//! Structural rules on the model summary (`loss` and the output layer's
//! `activation`) — a definite bug, so `error`:
//! - PyTorch `cross_entropy` (log-softmax inside) after a `softmax` or
//!   `sigmoid` output: the loss sees probabilities as logits.
//! - `nll` (expects log-probabilities) after `softmax` or no activation.
//! - `bce` / `binary_cross_entropy` (expects probabilities) with no
//!   activation, and `bce_with_logits` after a `sigmoid`.
//! - Keras `categorical_crossentropy` (expects probabilities unless
//!   `from_logits`) with a linear output and no `from_logits: true`.
//! - A regression loss (`mse`, `mae`, ...) on a regression task (no class
//!   counts) with a bounded `sigmoid`/`tanh`/`softmax` output (DD "out of
//!   range").
//!
//! Behavioural corroboration: with softmax before cross-entropy the loss
//! cannot go below ln(K − 1 + e) − 1 (a perfectly confident softmax gives
//! logits in {0, 1}); for K = 10 that is 1.46. A training loss stuck at that
//! floor while training accuracy is ≥ 0.97 is the signature even without a
//! model summary → `warning`.

use std::collections::BTreeMap;

use super::context::{Ctx, Task};
use super::stats::{fmt_num, fmt_pct};
use super::{Diagnosis, Evidence, Finding, Kind, Severity};

// The loss names of each rule, lower-case, with `-` and ` ` read as `_`.
/// PyTorch's cross-entropy (log-softmax inside): the loss takes raw logits.
pub(crate) const CROSS_ENTROPY: &[&str] =
    &["cross_entropy", "crossentropy", "crossentropyloss", "ce"];
/// Negative log-likelihood (expects log-probabilities).
const NLL: &[&str] = &["nll", "nll_loss", "nllloss"];
/// Binary cross-entropy on probabilities.
const BCE: &[&str] = &["bce", "binary_cross_entropy", "bceloss"];
/// Binary cross-entropy on logits (a sigmoid inside).
pub(crate) const BCE_WITH_LOGITS: &[&str] = &[
    "bce_with_logits",
    "bcewithlogits",
    "bcewithlogitsloss",
    "binary_cross_entropy_with_logits",
];
/// Keras' cross-entropies (on probabilities unless `from_logits`).
const KERAS_CROSS_ENTROPY: &[&str] = &[
    "categorical_crossentropy",
    "sparse_categorical_crossentropy",
    "binary_crossentropy",
];
/// Regression losses.
const REGRESSION: &[&str] = &[
    "mse",
    "mae",
    "l1",
    "huber",
    "smooth_l1",
    "mean_squared_error",
    "mean_absolute_error",
];

/// The cross-entropy floor after a softmax output with `k` classes.
pub fn softmax_ce_floor(k: usize) -> f64 {
    (k as f64 - 1.0 + std::f64::consts::E).ln() - 1.0
}

/// Whether the (lower-case) loss name `loss` is one of `names`, with `-`
/// and spaces read as `_`.
pub(crate) fn loss_is(loss: &str, names: &[&str]) -> bool {
    names
        .iter()
        .any(|n| loss == *n || loss.replace(['-', ' '], "_") == *n)
}

/// Whether the model's loss takes raw logits (cross-entropy, BCE with
/// logits, or a Keras loss with `from_logits: true`).
pub(crate) fn loss_takes_logits(model: &crate::record::ModelRecord) -> bool {
    let Some(l) = model.loss.as_deref().map(str::to_ascii_lowercase) else {
        return false;
    };
    loss_is(&l, CROSS_ENTROPY)
        || loss_is(&l, BCE_WITH_LOGITS)
        || model.extra.get("from_logits").and_then(|v| v.as_bool()) == Some(true)
}

pub(crate) fn detect(ctx: &Ctx, out: &mut Diagnosis) {
    let model = ctx.view.model.as_ref();
    let loss = model
        .and_then(|m| m.loss.as_deref())
        .map(str::to_ascii_lowercase);
    let head = model.and_then(|m| m.layers.last());
    let act = head
        .and_then(|l| l.activation.as_deref())
        .map(str::to_ascii_lowercase);
    let from_logits = model
        .and_then(|m| m.extra.get("from_logits"))
        .and_then(|v| v.as_bool());
    let classes = match &ctx.task {
        Task::Classification { classes, .. } => *classes,
        _ => None,
    };
    let floor = classes.filter(|k| *k >= 2).map(softmax_ce_floor);
    let recent = ctx.loss_recent();
    let train_acc = ctx.train_acc.and_then(|a| ctx.epoch_tail(a.series, 3));
    let at_floor = matches!((floor, recent), (Some(f), Some(r)) if r >= 0.9 * f && r <= 1.2 * f);

    let structural: Option<(String, String, Vec<String>)> = match (loss.as_deref(), act.as_deref())
    {
        (Some(l), Some(a)) => {
            let is = |names: &[&str]| loss_is(l, names);
            let probs = matches!(a, "softmax" | "sigmoid");
            if is(CROSS_ENTROPY) && probs && from_logits != Some(false) {
                Some((
                    format!(
                        "{} output fed to cross-entropy, which applies log-softmax itself",
                        cap(a)
                    ),
                    format!(
                        "CrossEntropyLoss expects raw logits; after a {a} its input is squashed into [0, 1], so the loss cannot get small, gradients shrink and training slows or stalls."
                    ),
                    vec![
                        format!(
                            "Remove the final {a} from the model and feed the logits to CrossEntropyLoss; apply softmax only for reporting probabilities."
                        ),
                        "Or keep the softmax and use NLLLoss on its log (log_softmax + NLLLoss)."
                            .into(),
                    ],
                ))
            } else if is(NLL) && a != "log_softmax" && a != "logsoftmax" {
                Some((
                    format!("NLL loss after a {a} output expects log-probabilities"),
                    "NLLLoss takes log-probabilities; without log_softmax its value is meaningless (it can go negative and unbounded).".into(),
                    vec!["Use log_softmax as the last layer with NLLLoss, or output logits and use CrossEntropyLoss.".into()],
                ))
            } else if is(BCE) && matches!(a, "none" | "linear" | "identity") {
                Some((
                    "Binary cross-entropy on a linear output that is not a probability".into(),
                    "BCELoss expects probabilities in [0, 1]; raw outputs outside that range give NaN or clipped losses.".into(),
                    vec!["Use BCEWithLogitsLoss on the raw output (numerically stable), or add a sigmoid.".into()],
                ))
            } else if is(BCE_WITH_LOGITS) && a == "sigmoid" {
                Some((
                    "Sigmoid output fed to BCEWithLogitsLoss, which applies a sigmoid itself".into(),
                    "The loss applies a second sigmoid, so predictions are squashed into [0.5, 0.73] and gradients are tiny.".into(),
                    vec!["Remove the final sigmoid; BCEWithLogitsLoss takes raw logits.".into()],
                ))
            } else if is(KERAS_CROSS_ENTROPY)
                && matches!(a, "none" | "linear")
                && from_logits != Some(true)
            {
                Some((
                    "Keras cross-entropy on a linear output without from_logits=True".into(),
                    "Keras cross-entropy treats its input as probabilities unless from_logits=True; raw logits get clipped and the loss is wrong.".into(),
                    vec!["Pass from_logits=True to the loss, or add a softmax/sigmoid output.".into()],
                ))
            } else if is(REGRESSION)
                && ctx.task == Task::Regression
                && matches!(a, "sigmoid" | "tanh" | "softmax")
            {
                Some((
                    format!("Regression loss on a bounded {a} output"),
                    format!("A {a} output can only produce values in {}, so regression targets outside that range can never be fitted.", if a == "tanh" { "[−1, 1]" } else { "[0, 1]" }),
                    vec!["Use a linear output layer for regression (or scale the targets into the output's range and back).".into()],
                ))
            } else {
                None
            }
        }
        _ => None,
    };
    let behavioural = structural.is_none()
        && act.is_none()
        && at_floor
        && train_acc.is_some_and(|a| a >= 0.97)
        && floor.is_some_and(|f| f >= 0.3);
    if structural.is_none() && !behavioural {
        return;
    }
    let mut metrics = BTreeMap::new();
    if let Some(f) = floor {
        metrics.insert("softmax_ce_floor".into(), f);
    }
    if let Some(r) = recent {
        metrics.insert("train_loss_recent".into(), r);
    }
    if let Some(a) = train_acc {
        metrics.insert("train_acc".into(), a);
    }
    let floor_text = match (floor, recent, classes) {
        (Some(f), Some(r), Some(k)) if at_floor => format!(
            " The training loss levels off at {} — the floor ln(K − 1 + e) − 1 = {} of softmax-then-cross-entropy for K = {k}{}.",
            fmt_num(r),
            fmt_num(f),
            train_acc
                .map(|a| format!(", although training accuracy is {}", fmt_pct(a)))
                .unwrap_or_default()
        ),
        _ => String::new(),
    };
    let (title, cause, fixes) = structural.unwrap_or_else(|| {
        (
            "Loss is stuck at the softmax-before-cross-entropy floor".into(),
            "The loss cannot fall below the value it has when a softmax output is fed to a loss that applies softmax again.".into(),
            vec!["Output logits (no final softmax) when using CrossEntropyLoss / from_logits=True.".into()],
        )
    });
    out.push(Finding {
        kind: Kind::LossActivationMismatch,
        caused_by: None,
        severity: if behavioural {
            Severity::Warning
        } else {
            Severity::Error
        },
        onset_step: ctx.train_loss.and_then(|l| l.series.steps.first().copied()),
        title,
        evidence: Evidence {
            series: ctx.train_loss.iter().map(|l| l.key.to_string()).collect(),
            layer: head.map(|h| h.name.clone()),
            metrics,
            summary: format!(
                "Model summary: loss {}, output activation {}.{floor_text}",
                loss.as_deref().unwrap_or("unknown"),
                act.as_deref().unwrap_or("unknown")
            ),
            samples: Vec::new(),
        },
        cause,
        fixes,
    });
}

pub(crate) fn cap(s: &str) -> String {
    let mut c = s.chars();
    c.next()
        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::testutil::healthy;
    use super::super::{Kind, Series, Severity, diagnose};
    use crate::record::{Layer, ModelRecord};

    fn model(loss: &str, act: &str) -> ModelRecord {
        ModelRecord {
            layers: vec![
                Layer {
                    name: "fc1".into(),
                    activation: Some("relu".into()),
                    outputs: Some(64),
                    ..Default::default()
                },
                Layer {
                    name: "head".into(),
                    activation: Some(act.into()),
                    outputs: Some(10),
                    ..Default::default()
                },
            ],
            loss: Some(loss.into()),
            ..Default::default()
        }
    }

    #[test]
    fn structural_mismatches() {
        for (loss, act, bad) in [
            ("cross_entropy", "softmax", true),
            ("cross_entropy", "none", false),
            ("nll", "log_softmax", false),
            ("nll", "softmax", true),
            ("bce", "sigmoid", false),
            ("bce", "none", true),
            ("bce_with_logits", "sigmoid", true),
            ("mse", "none", false),
            // No class counts + MSE: a regression task with a bounded output.
            ("mse", "sigmoid", true),
        ] {
            let mut v = healthy(10, 20);
            v.model = Some(model(loss, act));
            let f = diagnose(&v).get(Kind::LossActivationMismatch).cloned();
            assert_eq!(f.is_some(), bad, "{loss} + {act}");
            if let Some(f) = f {
                assert_eq!(f.severity, Severity::Error);
            }
        }
    }

    #[test]
    fn loss_floor_without_model_summary() {
        assert!((super::softmax_ce_floor(10) - 1.4612).abs() < 1e-3);
        let mut v = healthy(10, 20);
        v.model = Some(ModelRecord {
            layers: vec![Layer {
                name: "head".into(),
                outputs: Some(10),
                ..Default::default()
            }],
            ..Default::default()
        });
        let floor = super::softmax_ce_floor(10);
        v.scalars.insert(
            "train/loss".into(),
            Series::from_points((0..200).map(|i| (i, floor + 0.5 * (-(i as f64) / 20.0).exp()))),
        );
        let f = diagnose(&v)
            .get(Kind::LossActivationMismatch)
            .cloned()
            .expect("behavioural");
        assert_eq!(f.severity, Severity::Warning);
        // A healthy loss far below the floor is fine.
        let mut h = healthy(10, 20);
        h.model = v.model.clone();
        assert!(diagnose(&h).get(Kind::LossActivationMismatch).is_none());
    }
}
