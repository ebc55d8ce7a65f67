//! Pure detectors over an in-memory view of a run (see DESIGN.md).
//!
//! [`diagnose`] turns a [`RunView`] into a [`Diagnosis`]: a list of
//! [`Finding`]s (what is wrong, since when, why, how to fix it) and notes on
//! what could not be judged yet. Nothing here does I/O; the runner (`crate::runner`) loads the
//! view from the store and saves the findings.
//!
//! # Detectors
//!
//! One module per family; each module's documentation states its rules and
//! why they hold. The rules come from the published detectors summarised in
//! `shared/research/diagnostics.md` (AUTOTRAINER "AT", DeepDiagnosis "DD",
//! TheDeepChecker "TDC", Prechelt 1998 "P98"), adapted so that they depend on
//! what a signal *means* rather than on numbers fitted to one data set:
//!
//! | module | kinds |
//! |---|---|
//! | [`divergence`] | `divergence` |
//! | [`gradients`] | `exploding_gradients`, `vanishing_gradients` |
//! | [`fit`] | `overfitting`, `underfitting`, `slow_convergence` |
//! | [`oscillation`] | `oscillating_loss` |
//! | [`units`] | `dead_relu`, `saturated_activations`, `unchanged_weights` |
//! | [`data`] | `class_imbalance`, `distribution_shift`, `missing_values` |
//! | [`mismatch`] | `loss_activation_mismatch` |
//! | [`predictions`] | `label_errors`, `class_not_predicted` |
//! | [`architecture`] | `architecture`, `hyperparameters` (info-only hints from the model record and the config) |
//!
//! Common ground rules:
//! - A detector without its signal stays silent: no gradient finding without
//!   gradient norms, no dead-ReLU finding without `dead_frac` or activation
//!   statistics. Metric names of other tools are understood through
//!   [`names`].
//! - Mini-batch losses are noisy: detectors look at medians over windows or
//!   at epoch-level aggregates, never at single points (non-finite values
//!   excepted: one NaN is the most important point of a diverging run).
//! - Verdicts that need a trend (over/underfitting, slow convergence,
//!   oscillation) wait for enough evaluations and say so in
//!   [`Diagnosis::notes`] instead of guessing.
//! - Only [`Severity::Warning`] and worse count as "raised"; weak or
//!   uncertain signals are reported as [`Severity::Info`], and so are the
//!   `architecture` and `hyperparameters` hints, which name themselves as
//!   the cause of a raised finding when the run shows their problem.
//!
//! # Cost
//!
//! Every detector is O(n) in the points of the series it reads (medians by
//! selection, single passes, no sliding windows). Diagnosing 204 series of
//! 100k points each (20M points) takes ≈ 29 ms, ≈ 41 ms when the loss stalls
//! and every gated rule runs (release build, 2-CPU machine); see the ignored
//! `bench_large_run` test:
//! `cargo test --release --test diagnostics_fixtures -- --ignored bench --nocapture`.
//!
//! # Checking against labelled runs
//!
//! `tests/diagnostics_fixtures.rs` checks the dev runs in
//! `shared/fixtures/training-runs` against their `labels.json` (also
//! truncated, with other tools' metric names, with per-epoch losses and with
//! only the loss curves) and writes `predictions.json` for
//! `shared/tools/score.py`. Its ignored `score_directory` and `explain` tests
//! do the same for any directory of runs (`DIAG_DIR=...`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::record::{DatasetRecord, ModelRecord, PredictionsRecord, Record};

pub mod architecture;
mod context;
pub mod data;
pub mod divergence;
pub mod fit;
pub mod gradients;
pub mod mismatch;
pub mod names;
pub mod oscillation;
pub mod predictions;
mod stats;
pub(crate) use stats::fmt_step;
pub mod units;

use context::Ctx;

/// One scalar series, sorted by step, one value per step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    pub steps: Vec<u64>,
    pub values: Vec<f64>,
}

impl Series {
    /// Builds a series from points in any order; a later point replaces an
    /// earlier one at the same step.
    pub fn from_points(points: impl IntoIterator<Item = (u64, f64)>) -> Self {
        let map: BTreeMap<u64, f64> = points.into_iter().collect();
        let (steps, values) = map.into_iter().unzip();
        Series { steps, values }
    }

    pub fn len(&self) -> usize {
        self.steps.len().min(self.values.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last step, if any.
    pub fn last_step(&self) -> Option<u64> {
        self.steps.get(self.len().checked_sub(1)?).copied()
    }
}

/// One histogram snapshot: `counts.len() + 1 == edges.len()` (both empty when
/// every value was non-finite).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Hist {
    pub step: u64,
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    pub nonfinite: u64,
}

/// Everything the detectors know about one run.
///
/// Fields are public so the store layer can build a view directly;
/// [`RunView::from_records`] builds one from the record stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunView {
    pub name: String,
    pub config: serde_json::Value,
    /// `finished`, `failed`, `crashed`; `None` while the run is in progress.
    pub status: Option<String>,
    pub model: Option<ModelRecord>,
    /// At most one per split (a later record for a split replaces it).
    pub datasets: Vec<DatasetRecord>,
    pub scalars: BTreeMap<String, Series>,
    pub histograms: BTreeMap<String, Vec<Hist>>,
    /// The latest `predictions` record of each split (one per split).
    pub predictions: Vec<PredictionsRecord>,
}

impl RunView {
    /// Builds a view from records in recording order. A later scalar or
    /// histogram at the same (key, step) replaces the earlier one.
    pub fn from_records(records: impl IntoIterator<Item = Record>) -> Self {
        let mut view = RunView::default();
        let mut scalars: BTreeMap<String, BTreeMap<u64, f64>> = BTreeMap::new();
        let mut hists: BTreeMap<String, BTreeMap<u64, Hist>> = BTreeMap::new();
        for record in records {
            match record {
                Record::Run(r) => {
                    view.name = r.name;
                    view.config = r.config;
                }
                Record::Model(m) => view.model = Some(m),
                // Read by the pages, not (yet) by the detectors.
                Record::Image(_) | Record::Tensor(_) => {}
                Record::Predictions(p) => {
                    match view.predictions.iter_mut().find(|x| x.split == p.split) {
                        Some(slot) if slot.step > p.step => {}
                        Some(slot) => *slot = p,
                        None => view.predictions.push(p),
                    }
                }
                Record::Dataset(d) => match view.datasets.iter_mut().find(|x| x.split == d.split) {
                    Some(slot) => *slot = d,
                    None => view.datasets.push(d),
                },
                Record::Scalar(s) => {
                    scalars.entry(s.key).or_default().insert(s.step, s.value.0);
                }
                Record::Histogram(h) => {
                    let hist = Hist {
                        step: h.step,
                        edges: h.edges,
                        counts: h.counts,
                        nonfinite: h.nonfinite,
                    };
                    hists.entry(h.key).or_default().insert(h.step, hist);
                }
                Record::End(e) => view.status = Some(e.status),
            }
        }
        view.scalars = scalars
            .into_iter()
            .map(|(k, pts)| (k, Series::from_points(pts)))
            .collect();
        view.histograms = hists
            .into_iter()
            .map(|(k, h)| (k, h.into_values().collect()))
            .collect();
        view
    }

    /// The dataset summary of a split: `train` (also `training`) or `val`
    /// (also `validation`, `valid`, `eval`, `dev`); other names exactly.
    pub fn dataset(&self, split: &str) -> Option<&DatasetRecord> {
        let aliases: &[&str] = match split {
            "train" => &["train", "training"],
            "val" => &["val", "validation", "valid", "eval", "dev"],
            other => return self.datasets.iter().find(|d| d.split == other),
        };
        aliases.iter().find_map(|a| {
            self.datasets
                .iter()
                .find(|d| d.split.eq_ignore_ascii_case(a))
        })
    }
}

/// A diagnosis name, as in FORMAT.md and `labels.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Divergence,
    ExplodingGradients,
    VanishingGradients,
    Overfitting,
    Underfitting,
    OscillatingLoss,
    SlowConvergence,
    DeadRelu,
    SaturatedActivations,
    UnchangedWeights,
    ClassImbalance,
    DistributionShift,
    MissingValues,
    LossActivationMismatch,
    LabelErrors,
    ClassNotPredicted,
    Architecture,
    Hyperparameters,
}

crate::model::words!(Kind, "finding kind", [
    Divergence => "divergence",
    ExplodingGradients => "exploding_gradients",
    VanishingGradients => "vanishing_gradients",
    Overfitting => "overfitting",
    Underfitting => "underfitting",
    OscillatingLoss => "oscillating_loss",
    SlowConvergence => "slow_convergence",
    DeadRelu => "dead_relu",
    SaturatedActivations => "saturated_activations",
    UnchangedWeights => "unchanged_weights",
    ClassImbalance => "class_imbalance",
    DistributionShift => "distribution_shift",
    MissingValues => "missing_values",
    LossActivationMismatch => "loss_activation_mismatch",
    LabelErrors => "label_errors",
    ClassNotPredicted => "class_not_predicted",
    Architecture => "architecture",
    Hyperparameters => "hyperparameters",
]);

pub use crate::model::Severity;

/// The numbers and series that justify a finding.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Metric keys the finding is based on, as logged.
    #[serde(default)]
    pub series: Vec<String>,
    /// The layer concerned, for per-layer findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Named numbers (non-finite ones travel as `"NaN"`, `"Infinity"`, ...).
    #[serde(default, with = "metric_map")]
    pub metrics: BTreeMap<String, f64>,
    /// One or two sentences with the numbers, for people.
    #[serde(default)]
    pub summary: String,
    /// The samples concerned, for per-sample findings (`label_errors`: the
    /// surest suspects first, at most `predictions::MAX_LISTED`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<predictions::Suspect>,
}

/// One diagnosis of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: Kind,
    /// The kind of another finding of the same run that caused this one
    /// (a spike that killed the units: `dead_relu` caused by `divergence`),
    /// when the run's history shows it; `None` for a root cause.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caused_by: Option<Kind>,
    pub severity: Severity,
    /// The step where the problem started, when it can be located.
    pub onset_step: Option<u64>,
    /// One line, e.g. "Training loss became NaN at step 1,240".
    pub title: String,
    pub evidence: Evidence,
    /// The likely cause.
    pub cause: String,
    /// Concrete fixes, most likely first.
    pub fixes: Vec<String>,
}

/// The result of [`diagnose`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// At most one finding per kind, worst first.
    pub findings: Vec<Finding>,
    /// What could not be judged yet and why, e.g. "not enough data yet for
    /// overfitting (3 of 5 evaluations)".
    pub notes: Vec<String>,
}

impl Diagnosis {
    /// Findings of severity warning or worse.
    pub fn raised(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity.is_raised())
    }

    /// The finding of a kind, if any.
    pub fn get(&self, kind: Kind) -> Option<&Finding> {
        self.findings.iter().find(|f| f.kind == kind)
    }

    /// Adds a finding; of two findings of one kind the more severe is kept.
    pub(crate) fn push(&mut self, finding: Finding) {
        match self.findings.iter_mut().find(|f| f.kind == finding.kind) {
            Some(old) if old.severity >= finding.severity => {}
            Some(old) => *old = finding,
            None => self.findings.push(finding),
        }
    }

    pub(crate) fn note(&mut self, note: impl Into<String>) {
        let note = note.into();
        if !self.notes.contains(&note) {
            self.notes.push(note);
        }
    }
}

/// Runs every detector over `view`.
pub fn diagnose(view: &RunView) -> Diagnosis {
    let ctx = Ctx::new(view);
    let mut out = Diagnosis::default();
    divergence::detect(&ctx, &mut out);
    gradients::detect(&ctx, &mut out);
    units::detect(&ctx, &mut out);
    // Data findings first: fit verdicts defer to a class imbalance.
    data::detect(&ctx, &mut out);
    fit::detect(&ctx, &mut out);
    oscillation::detect(&ctx, &mut out);
    mismatch::detect(&ctx, &mut out);
    predictions::detect(&ctx, &mut out);
    architecture::detect(&ctx, &mut out);
    missing_signal_notes(&ctx, &mut out);
    lr_raise_onsets(&ctx, &mut out);
    link_causes(&mut out);
    architecture::link_causes(&ctx, &mut out);
    guard_fixes(&ctx, &mut out);
    out.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then(a.onset_step.cmp(&b.onset_step))
            .then(a.kind.cmp(&b.kind))
    });
    out
}

/// Names, for a finding that is the consequence of another one of the same
/// run, that other finding's kind (`caused_by`), when the order of their
/// onsets (the cause starts no later) and what the signals mean make one
/// the cause of the other. The links, cause → consequence:
///
/// | cause | consequence |
/// |---|---|
/// | `missing_values` | `divergence` (NaN inputs make the loss NaN) |
/// | `exploding_gradients` | `divergence` |
/// | `divergence` or `exploding_gradients` (the earlier) | `dead_relu`, `saturated_activations` (a spike that killed or pinned the units) |
/// | `saturated_activations` | `vanishing_gradients` |
/// | `dead_relu`, `vanishing_gradients`, `saturated_activations`, `unchanged_weights` | `underfitting`, `slow_convergence` |
/// | `class_imbalance` | `distribution_shift` (the training statistics are the majority class's) |
/// | `distribution_shift` | `overfitting` (validation from elsewhere, not memorisation) |
///
/// Only raised findings are causes; the graph has no cycle. The info-only
/// `architecture` and `hyperparameters` hints are causes too, of what no
/// raised finding explains ([`architecture::link_causes`]).
fn link_causes(out: &mut Diagnosis) {
    let raised = |k: Kind| {
        out.findings
            .iter()
            .find(|f| f.kind == k && f.severity.is_raised())
            .map(|f| f.onset_step)
    };
    let no_later = |cause: Option<u64>, effect: Option<u64>| match (cause, effect) {
        (Some(c), Some(e)) => c <= e,
        _ => true,
    };
    let mut links: Vec<(Kind, Kind)> = Vec::new();
    let onset = |k: Kind| out.get(k).and_then(|f| f.onset_step);
    if raised(Kind::MissingValues).is_some() && out.get(Kind::Divergence).is_some() {
        links.push((Kind::Divergence, Kind::MissingValues));
    } else if let Some(e) = raised(Kind::ExplodingGradients)
        && no_later(e, onset(Kind::Divergence))
    {
        links.push((Kind::Divergence, Kind::ExplodingGradients));
    }
    // The earlier of divergence and exploding gradients (exploding on a tie:
    // the gradient is what moved the weights).
    let instability = [Kind::ExplodingGradients, Kind::Divergence]
        .into_iter()
        .filter_map(|k| raised(k).map(|o| (o, k)))
        .min_by_key(|(o, k)| (o.unwrap_or(0), *k != Kind::ExplodingGradients))
        .filter(|_| raised(Kind::MissingValues).is_none());
    for effect in [Kind::DeadRelu, Kind::SaturatedActivations] {
        if let Some((o, cause)) = instability
            && no_later(o, onset(effect))
        {
            links.push((effect, cause));
        }
    }
    if raised(Kind::SaturatedActivations).is_some() {
        links.push((Kind::VanishingGradients, Kind::SaturatedActivations));
    }
    if let Some(unit) = [
        Kind::DeadRelu,
        Kind::VanishingGradients,
        Kind::SaturatedActivations,
        Kind::UnchangedWeights,
    ]
    .into_iter()
    .find(|k| raised(*k).is_some())
    {
        links.push((Kind::Underfitting, unit));
        links.push((Kind::SlowConvergence, unit));
    }
    if raised(Kind::ClassImbalance).is_some() {
        links.push((Kind::DistributionShift, Kind::ClassImbalance));
    }
    if raised(Kind::DistributionShift).is_some() {
        links.push((Kind::Overfitting, Kind::DistributionShift));
    }
    for (effect, cause) in links {
        if let Some(f) = out.findings.iter_mut().find(|f| f.kind == effect)
            && f.caused_by.is_none()
            && f.kind != cause
        {
            f.caused_by = Some(cause);
        }
    }
}

/// An instability (divergence, exploding gradients, oscillation) that
/// follows a raise of the learning rate above anything used before (see
/// `Ctx::lr_raised_before`) began with that raise: its onset moves to the
/// raise's step, its cause names it, and its first fix is to keep the LR
/// where it was.
fn lr_raise_onsets(ctx: &Ctx, out: &mut Diagnosis) {
    for f in &mut out.findings {
        if !matches!(
            f.kind,
            Kind::Divergence | Kind::ExplodingGradients | Kind::OscillatingLoss
        ) || !f.severity.is_raised()
        {
            continue;
        }
        let Some(onset) = f.onset_step else { continue };
        let Some((step, before, after)) = ctx.lr_raised_before(onset) else {
            continue;
        };
        f.onset_step = Some(step);
        f.cause = format!(
            "The learning rate was raised ×{} at step {} ({} → {}), and the run broke down after it. {}",
            stats::fmt_num(after / before),
            fmt_step(step),
            stats::fmt_num(before),
            stats::fmt_num(after),
            f.cause
        );
        f.fixes.insert(
            0,
            format!(
                "Keep the learning rate at {} (the value that trained well) instead of raising it to {} at step {}.",
                stats::fmt_num(before),
                stats::fmt_num(after),
                fmt_step(step)
            ),
        );
    }
}

/// Whether `fix` says one of `phrases` (lower case), in any case.
fn says_any(fix: &str, phrases: &[&str]) -> bool {
    let f = fix.to_ascii_lowercase();
    phrases.iter().any(|p| f.contains(p))
}

/// A fix that raises the learning rate.
pub(crate) fn raises_lr(fix: &str) -> bool {
    says_any(
        fix,
        &[
            "increase the learning rate",
            "higher learning rate",
            "raise the learning rate",
            "larger learning rate",
        ],
    )
}

/// A fix that adds regularisation.
pub(crate) fn adds_regularisation(fix: &str) -> bool {
    says_any(
        fix,
        &[
            "add regularisation",
            "regularise more",
            "increase weight decay",
            "add dropout",
            "more dropout",
        ],
    )
}

/// A fix that adds capacity.
pub(crate) fn adds_capacity(fix: &str) -> bool {
    says_any(
        fix,
        &[
            "increase capacity",
            "wider",
            "more layers",
            "add layers",
            "larger model",
            "bigger model",
        ],
    )
}

/// Whether the run's history forbids a larger learning rate: the loss spiked
/// or went non-finite, or the gradients exploded or the units died.
pub(crate) fn lr_preceded_instability(ctx: &Ctx, d: &Diagnosis) -> bool {
    ctx.loss_spiked()
        || ctx.loss_nonfinite()
        || d.raised().any(|f| {
            matches!(
                f.kind,
                Kind::Divergence | Kind::ExplodingGradients | Kind::DeadRelu
            )
        })
}

/// Fixes are cross-checked against the run's history: no larger learning
/// rate after a spike, a NaN or dead units; no regularisation for a model
/// that underfits, no capacity for one that overfits. The detectors word
/// their fixes with this in mind; this pass is the one place that
/// guarantees it (a finding left without fixes gets a neutral one).
fn guard_fixes(ctx: &Ctx, out: &mut Diagnosis) {
    let no_lr_up = lr_preceded_instability(ctx, out);
    for f in &mut out.findings {
        let before = f.fixes.len();
        f.fixes.retain(|x| {
            !(no_lr_up && raises_lr(x)
                || f.kind == Kind::Underfitting && adds_regularisation(x)
                || f.kind == Kind::Overfitting && adds_capacity(x))
        });
        if f.fixes.is_empty() && before > 0 {
            f.fixes.push(
                "Fix the other findings of this run first (an instability makes this one unreliable); keep the learning rate at or below its current value.".into(),
            );
        }
    }
}

/// Says which detectors could not run for lack of a signal, so a clean
/// diagnosis is not mistaken for a clean bill of health.
fn missing_signal_notes(ctx: &Ctx, out: &mut Diagnosis) {
    use names::Role;
    let has = |role: Role| ctx.layers.iter().any(|l| l.get(role).is_some());
    if ctx.train_loss.is_none() {
        out.note("no training loss logged: divergence, convergence and fit are not judged");
    }
    if !has(Role::GradNorm) && ctx.global_grad.is_none() {
        out.note("no gradient norms logged (grad_norm/<layer>): exploding and vanishing gradients are not judged");
    }
    if !has(Role::DeadFrac) && !has(Role::ActStd) {
        out.note("no dead_frac/<layer> or activation statistics logged: dead ReLUs are not judged");
    }
    if !has(Role::UpdateRatio) && !has(Role::WeightNorm) {
        out.note("no update_ratio/<layer> or weight_norm/<layer> logged: unchanged weights are not judged");
    }
    if ctx.view.datasets.is_empty() {
        out.note("no dataset summaries logged: class imbalance, distribution shift and missing values are not judged");
    }
}

/// Serde for `BTreeMap<String, f64>` with non-finite values as strings.
mod metric_map {
    use std::collections::BTreeMap;

    use serde::ser::SerializeMap;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::record::Value;

    pub fn serialize<S: Serializer>(map: &BTreeMap<String, f64>, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(map.len()))?;
        for (k, v) in map {
            m.serialize_entry(k, &Value(*v))?;
        }
        m.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, f64>, D::Error> {
        let map = BTreeMap::<String, Value>::deserialize(d)?;
        Ok(map.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

/// Helpers shared by the detectors' unit tests: synthetic runs.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;

    /// A view with the given `(key, points)` series and nothing else.
    pub fn view(series: &[(&str, Vec<(u64, f64)>)]) -> RunView {
        let mut v = RunView {
            name: "synthetic".into(),
            ..Default::default()
        };
        for (k, pts) in series {
            v.scalars
                .insert((*k).to_string(), Series::from_points(pts.iter().copied()));
        }
        v
    }

    /// Adds the series `key`: `f(e)` at the end of each epoch `e = 1..=n`, at
    /// step `e * steps_per_epoch`.
    pub fn epochs(
        v: &mut RunView,
        key: &str,
        n: usize,
        steps_per_epoch: usize,
        f: impl Fn(usize) -> f64,
    ) {
        v.scalars.insert(
            key.into(),
            Series::from_points((1..=n).map(|e| ((e * steps_per_epoch) as u64, f(e)))),
        );
    }

    /// `n` points at steps `0, every, 2*every, ...` from `f(i)`.
    /// `f` for the first `finite` points, NaN after (a run that blew up).
    pub fn then_nan(finite: usize, f: impl Fn(usize) -> f64) -> impl Fn(usize) -> f64 {
        move |i| if i < finite { f(i) } else { f64::NAN }
    }

    pub fn curve(n: usize, every: u64, f: impl Fn(usize) -> f64) -> Vec<(u64, f64)> {
        (0..n).map(|i| (i as u64 * every, f(i))).collect()
    }

    /// A training split of 4 classes with 100 samples each.
    pub fn four_balanced_classes() -> DatasetRecord {
        balanced_classes(4)
    }

    /// A training split of `n` classes with 100 samples each.
    pub fn balanced_classes(n: usize) -> DatasetRecord {
        DatasetRecord {
            split: "train".into(),
            class_counts: Some(
                (0..n)
                    .map(|c| (c.to_string(), serde_json::json!(100)))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    /// Deterministic pseudo-noise in [-1, 1].
    pub fn noise(i: usize) -> f64 {
        let x = (i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((x >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
    }

    /// A loss stuck at chance (ln 10) over 300 steps, and gradient norms of
    /// the `layers` (input first) that fall ×1000 per layer towards the
    /// input: gradients vanishing.
    pub fn vanishing_grads<'a>(layers: &[&'a str]) -> Vec<(&'a str, Vec<(u64, f64)>)> {
        let mut series = vec![("train/loss", curve(300, 1, |i| 2.3 + 0.01 * noise(i)))];
        let last = layers.len() as i32 - 1;
        for (d, name) in layers.iter().enumerate() {
            series.push((
                *name,
                curve(60, 5, move |i| {
                    0.4 * 10f64.powi(-3 * (last - d as i32)) * (1.0 + 0.2 * noise(i))
                }),
            ));
        }
        series
    }

    /// A healthy classification run: mini-batch loss falling from ln(10) with
    /// noise, epoch-level train/val accuracy and loss, 10 classes.
    pub fn healthy(epochs: usize, steps_per_epoch: usize) -> RunView {
        let n = epochs * steps_per_epoch;
        let loss = |t: f64| 0.05 + 2.25 * (-t * 4.0).exp();
        let mut v = view(&[
            (
                "train/loss",
                curve(n, 1, |i| loss(i as f64 / n as f64) * (1.0 + 0.3 * noise(i))),
            ),
            ("lr", curve(n, 1, |_| 1e-3)),
        ]);
        let ep = |f: &dyn Fn(f64) -> f64| -> Series {
            Series::from_points(
                (1..=epochs).map(|e| ((e * steps_per_epoch) as u64, f(e as f64 / epochs as f64))),
            )
        };
        v.scalars.insert("epoch".into(), ep(&|t| t * epochs as f64));
        v.scalars
            .insert("train/acc".into(), ep(&|t| 0.99 - 0.6 * (-t * 5.0).exp()));
        v.scalars
            .insert("val/acc".into(), ep(&|t| 0.96 - 0.6 * (-t * 5.0).exp()));
        v.scalars
            .insert("val/loss".into(), ep(&|t| 0.1 + 2.0 * (-t * 5.0).exp()));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{ScalarRecord, Value};

    #[test]
    fn kind_names_round_trip() {
        for &k in Kind::ALL {
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
            assert_eq!(k.as_str().parse::<Kind>(), Ok(k));
        }
        assert!(Severity::Info < Severity::Warning && Severity::Error < Severity::Critical);
        assert_eq!(
            serde_json::to_string(&Severity::Critical).unwrap(),
            "\"critical\""
        );
    }

    #[test]
    fn every_kind_is_listed_in_the_docs_and_the_readme() {
        let docs = include_str!("../../docs/record-format.md");
        let readme = include_str!("../../README.md");
        for &k in Kind::ALL {
            let name = format!("`{}`", k.as_str());
            assert!(
                docs.contains(&name),
                "{name} missing in docs/record-format.md"
            );
            assert!(readme.contains(&name), "{name} missing in README.md");
        }
    }

    #[test]
    fn evidence_serializes_nonfinite_metrics_as_strings() {
        let mut e = Evidence::default();
        e.metrics.insert("loss".into(), f64::NAN);
        e.metrics.insert("x".into(), 1.5);
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains("\"loss\":\"NaN\""), "{text}");
        let back: Evidence = serde_json::from_str(&text).unwrap();
        assert!(back.metrics["loss"].is_nan());
        assert_eq!(back.metrics["x"], 1.5);
    }

    #[test]
    fn later_points_replace_earlier_ones() {
        let s = |step, v: f64| {
            Record::Scalar(ScalarRecord {
                step,
                key: "train/loss".into(),
                value: Value(v),
                time: None,
            })
        };
        let v = RunView::from_records([s(2, 1.0), s(1, 2.0), s(2, 3.0)]);
        assert_eq!(
            v.scalars["train/loss"],
            Series {
                steps: vec![1, 2],
                values: vec![2.0, 3.0]
            }
        );
    }

    #[test]
    fn empty_and_degenerate_views_do_not_panic() {
        let d = diagnose(&RunView::default());
        assert!(d.findings.is_empty());
        let nan = |n| testutil::curve(n, 1, |_| f64::NAN);
        for n in [0, 1, 2, 7] {
            let keys = [
                "train/loss",
                "val/loss",
                "train/acc",
                "val/acc",
                "lr",
                "epoch",
                "grad_norm/fc1",
                "grad_norm/head",
                "weight_norm/fc1",
                "update_ratio/fc1",
                "dead_frac/fc1",
                "sat_frac/fc1",
                "act_mean/fc1",
                "act_std/fc1",
            ];
            let all_nan: Vec<_> = keys.iter().map(|k| (*k, nan(n))).collect();
            diagnose(&testutil::view(&all_nan));
            let zeros: Vec<_> = keys
                .iter()
                .map(|k| (*k, testutil::curve(n, 1, |_| 0.0)))
                .collect();
            diagnose(&testutil::view(&zeros));
            let inf: Vec<_> = keys
                .iter()
                .map(|k| {
                    (
                        *k,
                        testutil::curve(n, 1, |i| if i % 2 == 0 { f64::INFINITY } else { -1.0 }),
                    )
                })
                .collect();
            diagnose(&testutil::view(&inf));
        }
    }

    #[test]
    fn healthy_synthetic_run_raises_nothing() {
        let d = diagnose(&testutil::healthy(20, 50));
        assert_eq!(d.raised().count(), 0, "{:#?}", d.findings);
    }
}
