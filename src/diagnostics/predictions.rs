//! Label errors and per-class behaviour, from `predictions` records (record
//! format v2: a model's class probabilities on the samples of a split, with
//! their given labels; `run.log_predictions` in the Python client).
//!
//! [`analyse`] is the pure analysis the run page and
//! `GET /api/v1/runs/{id}/predictions/analysis` show: the confusion matrix,
//! per-class precision and recall, and the likely label errors found by
//! **confident learning** (Northcutt, Jiang & Chuang 2021, "Confident
//! Learning: Estimating Uncertainty in Dataset Labels", JAIR 70):
//!
//! - the threshold of class j is t_j = the mean predicted probability of j
//!   over the samples labelled j (the model's self-confidence on j);
//! - a sample labelled i counts for every class j whose probability reaches
//!   its threshold (p_j ≥ t_j); of those the most probable is its
//!   "confident" class — when that is not i, the sample is a suspect (an
//!   off-diagonal entry of the confident joint);
//! - the estimated share of label errors is suspects / n, and the suspects
//!   are ranked by the margin p_j − p_i ("prune by noise rate" ordering:
//!   the ones the model is surest about first).
//!
//! Only the latest record of each split is read (an early one describes a
//! model that was still learning). The probabilities should be out of
//! sample (a held-out split, or cross-validated): a model that memorised its
//! training labels agrees with them, so in-sample probabilities hide errors
//! (they never invent them).
//!
//! **Top-k records** list only each sample's k most probable classes. An
//! unlisted class's probability is unknown but at most the k-th listed value
//! and at most the mass not listed; it is taken at that upper bound. This
//! raises thresholds and shrinks margins, and a class not listed for a
//! sample is never its confident class: with top-k the estimate is a lower
//! bound of what the full probabilities would give.
//!
//! # Rules
//!
//! | kind | rule | severity |
//! |---|---|---|
//! | `label_errors` | in a split of ≥ [`MIN_SAMPLES`] samples whose model is good where it does not disagree (≥ [`MIN_CLEAN_ACCURACY`] accuracy off the confident suspects), the share of *confident* suspects (given label ≤ [`LABEL_PROB_MAX`], the other class ≥ [`OTHER_PROB_MIN`], the given class recalled ≥ [`MIN_CLASS_RECALL`]) is ≥ [`WARN_SHARE`] and clearly above [`BASELINE_SHARE`] | `warning`; `error` from [`ERROR_SHARE`]; `info` from [`INFO_SHARE`] |
//! | `class_not_predicted` | a class with ≥ [`MIN_CLASS_SUPPORT`] labelled samples in a split is the most probable class of none of them or of any other sample | `warning` |
//!
//! What separates label noise from the model's own mistakes: a decent
//! model's mistakes are mostly unsure (the given label keeps a fair share of
//! the probability), and even an over-confident net at 90–95 % accuracy is
//! confidently wrong on only a few percent of its samples; a wrong label
//! makes a good model put almost nothing on it and most of its mass on
//! another class. So the finding counts only confident suspects, requires
//! their share to exceed what confident mistakes give, and stays silent for
//! a weak model (whose confident disagreements are its own errors) and for a
//! class the model does not know (recall below [`MIN_CLASS_RECALL`]: a
//! collapsed class is a model problem, seen in the confusion matrix and in
//! `class_not_predicted`). The full confident-learning share and every
//! suspect are still reported by the analysis.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::context::Ctx;
use super::stats::{fmt_num, fmt_pct, fmt_step};
use super::{Diagnosis, Evidence, Finding, Kind, Severity};
use crate::record::PredictionsRecord;

/// Fewest samples in a split for a label-error verdict: below, a handful of
/// confident mistakes is already several percent.
pub const MIN_SAMPLES: usize = 100;
/// A confident suspect's given label has at most this probability: the
/// model all but rules the label out (a tenth of a fair coin for 2 classes).
pub const LABEL_PROB_MAX: f64 = 0.1;
/// ... and another class at least this one: more likely than all the others.
pub const OTHER_PROB_MIN: f64 = 0.5;
/// A suspect counts only when the model recalls its given class at least
/// this often: a class the model does not know produces confident
/// disagreements that are the model's.
pub const MIN_CLASS_RECALL: f64 = 0.5;
/// The model must be this accurate on the samples that are not confident
/// suspects: a weak model's confident disagreements are its own errors.
pub const MIN_CLEAN_ACCURACY: f64 = 0.8;
/// The share of confident mistakes a decent model makes by itself (an
/// over-confident net at ~93 % accuracy is confidently wrong on ~3–4 % of
/// its samples); a label-error verdict must be clearly above it.
pub const BASELINE_SHARE: f64 = 0.04;
/// Standard errors the confident share must be above [`BASELINE_SHARE`]
/// (Wilson lower bound), so a small split's noise is not a verdict.
const Z: f64 = 2.0;
/// Confident-suspect share from which `label_errors` is a warning (half as
/// much again as the baseline: more than a healthy model's confident
/// mistakes explain; 10 % flipped labels give ≈ 6–7 %, since confident
/// learning flags only the wrong labels whose other class reaches its
/// threshold, about two thirds of them).
pub const WARN_SHARE: f64 = 0.06;
/// ... and an error: about one label in seven wrong changes what the model
/// learns and what its validation accuracy means.
pub const ERROR_SHARE: f64 = 0.15;
/// ... and worth mentioning (`info`): the suspects are still worth a look.
pub const INFO_SHARE: f64 = 0.03;
/// Fewest labelled samples of a class for `class_not_predicted` (fewer, and
/// never predicting it can be chance).
pub const MIN_CLASS_SUPPORT: u64 = 10;
/// Most suspects listed in a finding's evidence.
pub const MAX_LISTED: usize = 20;

/// One class of one split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassStats {
    pub class: u32,
    /// Samples labelled with the class.
    pub support: u64,
    /// Samples whose most probable class it is.
    pub predicted: u64,
    /// Samples labelled with it and predicted as it.
    pub correct: u64,
    /// correct / predicted (`None` when never predicted).
    pub precision: Option<f64>,
    /// correct / support (`None` without labelled samples).
    pub recall: Option<f64>,
    /// Confident learning's threshold t_j (`None` without labelled samples).
    pub threshold: Option<f64>,
}

/// A sample whose given label is likely wrong.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suspect {
    pub split: String,
    /// The record's id of the sample, or its position in the record when it
    /// has no ids.
    pub id: serde_json::Value,
    /// The given (logged) label.
    pub label: u32,
    /// The class the model is confident about instead.
    pub predicted: u32,
    /// The model's probability of `predicted`.
    pub confidence: f64,
    /// The model's probability of the given label (with top-k and the label
    /// not listed: its upper bound).
    pub label_prob: f64,
    /// Whether `label_prob` is only an upper bound (top-k, label not listed).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub label_prob_bound: bool,
    /// Whether the model all but rules the label out while another class
    /// is more likely than all the others (see the module documentation).
    pub confident: bool,
}

/// The analysis of one `predictions` record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    pub split: String,
    pub step: u64,
    pub n: usize,
    pub num_classes: u32,
    /// Whether the record lists only the top-k classes of each sample.
    pub top_k: bool,
    /// Share of samples whose most probable class is the given label.
    pub accuracy: f64,
    /// Classes that are labelled or predicted, by index.
    pub classes: Vec<ClassStats>,
    /// Non-zero cells of the confusion matrix: (given label, predicted class, count),
    /// by label then prediction.
    pub confusion: Vec<(u32, u32, u64)>,
    /// Confident learning's estimate of the share of wrong labels (suspects / n).
    pub label_error_share: f64,
    /// Share of confident suspects: what `label_errors` is judged on.
    pub confident_share: f64,
    /// Accuracy on the samples that are not confident suspects.
    pub clean_accuracy: f64,
    /// Every suspect, surest first (largest margin p_predicted − p_label).
    pub suspects: Vec<Suspect>,
}

/// Probabilities of one sample.
struct Row<'a> {
    classes: Option<&'a [u32]>,
    probs: &'a [crate::record::Value],
    /// Upper bound of an unlisted class's probability (0 for full rows).
    unlisted: f64,
}

impl<'a> Row<'a> {
    fn new(p: &'a PredictionsRecord, i: usize) -> Self {
        let probs = p.probs[i].as_slice();
        let classes = p.classes.as_ref().map(|c| c[i].as_slice());
        let unlisted = match classes {
            None => 0.0,
            Some(_) => {
                let min = probs.iter().map(|v| v.0).fold(f64::INFINITY, f64::min);
                let rest = 1.0 - probs.iter().map(|v| v.0).sum::<f64>();
                min.min(rest).max(0.0)
            }
        };
        Row {
            classes,
            probs,
            unlisted,
        }
    }

    /// (class, probability) of the listed classes.
    fn listed(&self) -> impl Iterator<Item = (u32, f64)> + '_ {
        self.probs.iter().enumerate().map(|(j, v)| {
            let c = self.classes.map_or(j as u32, |c| c[j]);
            (c, finite(v.0))
        })
    }

    /// The probability of class `c`, and whether it is only a bound.
    fn prob(&self, c: u32) -> (f64, bool) {
        match self.classes {
            None => (
                self.probs.get(c as usize).map_or(0.0, |v| finite(v.0)),
                false,
            ),
            Some(cs) => match cs.iter().position(|x| *x == c) {
                Some(j) => (finite(self.probs[j].0), false),
                None => (self.unlisted, true),
            },
        }
    }

    /// The most probable class (the lowest index on a tie).
    fn argmax(&self) -> Option<(u32, f64)> {
        self.listed().fold(None, |best, (c, p)| match best {
            Some((bc, bp)) if bp > p || bp == p && bc < c => Some((bc, bp)),
            _ => Some((c, p)),
        })
    }
}

fn finite(p: f64) -> f64 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

/// The sample's id: the record's, or its position.
fn sample_id(p: &PredictionsRecord, i: usize) -> serde_json::Value {
    p.ids
        .as_ref()
        .and_then(|ids| ids.get(i).cloned())
        .unwrap_or_else(|| serde_json::json!(i))
}

/// Confusion matrix, per-class statistics and confident learning on one
/// record (assumed valid, as ingest checks: as many rows as labels).
pub fn analyse(p: &PredictionsRecord) -> Analysis {
    let n = p.labels.len().min(p.probs.len());
    let rows: Vec<Row> = (0..n).map(|i| Row::new(p, i)).collect();
    let mut stats: BTreeMap<u32, ClassStats> = BTreeMap::new();
    let blank = |class| ClassStats {
        class,
        support: 0,
        predicted: 0,
        correct: 0,
        precision: None,
        recall: None,
        threshold: None,
    };
    let mut confusion: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    let mut self_conf: BTreeMap<u32, f64> = BTreeMap::new();
    let mut preds: Vec<Option<u32>> = Vec::with_capacity(n);
    for (row, &label) in rows.iter().zip(&p.labels) {
        let pred = row.argmax().map(|x| x.0);
        preds.push(pred);
        stats.entry(label).or_insert_with(|| blank(label)).support += 1;
        *self_conf.entry(label).or_default() += row.prob(label).0;
        if let Some(pc) = pred {
            let s = stats.entry(pc).or_insert_with(|| blank(pc));
            s.predicted += 1;
            if pc == label {
                s.correct += 1;
            }
            *confusion.entry((label, pc)).or_default() += 1;
        }
    }
    for s in stats.values_mut() {
        s.precision = (s.predicted > 0).then(|| s.correct as f64 / s.predicted as f64);
        s.recall = (s.support > 0).then(|| s.correct as f64 / s.support as f64);
        s.threshold = (s.support > 0).then(|| self_conf[&s.class] / s.support as f64);
    }
    let threshold = |c: u32| stats.get(&c).and_then(|s| s.threshold);
    let mut ranked: Vec<(f64, Suspect)> = Vec::new();
    for (i, (row, &label)) in rows.iter().zip(&p.labels).enumerate() {
        let (p_label, bound) = row.prob(label);
        let mut best: Option<(u32, f64)> = threshold(label)
            .filter(|t| p_label >= *t)
            .map(|_| (label, p_label));
        for (c, pc) in row.listed() {
            if c == label || threshold(c).is_none_or(|t| pc < t) {
                continue;
            }
            if best.is_none_or(|(_, bp)| pc > bp) {
                best = Some((c, pc));
            }
        }
        let Some((other, p_other)) = best.filter(|(c, _)| *c != label) else {
            continue;
        };
        let recall = stats[&label].recall.unwrap_or(0.0);
        let confident =
            p_label <= LABEL_PROB_MAX && p_other >= OTHER_PROB_MIN && recall >= MIN_CLASS_RECALL;
        ranked.push((
            p_other - p_label,
            Suspect {
                split: p.split.clone(),
                id: sample_id(p, i),
                label,
                predicted: other,
                confidence: p_other,
                label_prob: p_label,
                label_prob_bound: bound,
                confident,
            },
        ));
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let suspects: Vec<Suspect> = ranked.into_iter().map(|x| x.1).collect();
    let confident = suspects.iter().filter(|s| s.confident).count();
    let correct: usize = stats.values().map(|s| s.correct as usize).sum();
    // Confident suspects are never correct (their confident class is
    // another one, and more probable than the label), so the clean
    // accuracy is the correct ones among the rest.
    let clean_accuracy = if n > confident {
        correct as f64 / (n - confident) as f64
    } else {
        0.0
    };
    let share = |k: usize| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    Analysis {
        split: p.split.clone(),
        step: p.step,
        n,
        num_classes: p
            .num_classes
            .unwrap_or_else(|| p.probs.first().map_or(0, |r| r.len() as u32)),
        top_k: p.classes.is_some(),
        accuracy: share(correct),
        classes: stats.into_values().collect(),
        confusion: confusion.into_iter().map(|((a, b), c)| (a, b, c)).collect(),
        label_error_share: share(suspects.len()),
        confident_share: share(confident),
        clean_accuracy,
        suspects,
    }
}

/// The split a page or the API shows by default: a validation split (its
/// probabilities are out of sample), else a test split, else any split but
/// the training one, else the first.
pub fn preferred_split(splits: &[String]) -> Option<&str> {
    let rank = |s: &str| match s.to_ascii_lowercase().as_str() {
        "val" | "validation" | "valid" | "eval" | "dev" => 0,
        "test" => 1,
        "train" | "training" => 3,
        _ => 2,
    };
    splits
        .iter()
        .enumerate()
        .min_by_key(|(i, s)| (rank(s), *i))
        .map(|(_, s)| s.as_str())
}

/// Lower end of the Wilson score interval of `k` successes in `n`.
fn wilson_lower(share: f64, n: usize, z: f64) -> f64 {
    if n == 0 {
        return 0.0;
    }
    let n = n as f64;
    let z2 = z * z;
    let centre = share + z2 / (2.0 * n);
    let spread = z * (share * (1.0 - share) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// The severity of a split's label errors, or why it is not judged.
fn label_error_severity(a: &Analysis) -> Result<Option<Severity>, String> {
    if a.n < MIN_SAMPLES {
        return Err(format!(
            "too few samples in the {} predictions for label errors ({} of {MIN_SAMPLES})",
            a.split, a.n
        ));
    }
    if a.clean_accuracy < MIN_CLEAN_ACCURACY {
        return Err(format!(
            "the model is too weak on {} ({} accurate off the suspects, below {}) to tell wrong labels from its own mistakes",
            a.split,
            fmt_pct(a.clean_accuracy),
            fmt_pct(MIN_CLEAN_ACCURACY)
        ));
    }
    let c = a.confident_share;
    let clear = wilson_lower(c, a.n, Z) >= BASELINE_SHARE;
    Ok(if c >= ERROR_SHARE && clear {
        Some(Severity::Error)
    } else if c >= WARN_SHARE && clear {
        Some(Severity::Warning)
    } else if c >= INFO_SHARE {
        Some(Severity::Info)
    } else {
        None
    })
}

pub(crate) fn detect(ctx: &Ctx, out: &mut Diagnosis) {
    let analyses: Vec<Analysis> = ctx.view.predictions.iter().map(analyse).collect();
    label_errors(&analyses, out);
    not_predicted(&analyses, out);
}

fn label_errors(analyses: &[Analysis], out: &mut Diagnosis) {
    let mut judged: Vec<(&Analysis, Severity)> = Vec::new();
    for a in analyses {
        match label_error_severity(a) {
            Ok(Some(sev)) => judged.push((a, sev)),
            Ok(None) => {}
            Err(note) => out.note(note),
        }
    }
    let Some(&(worst, severity)) = judged.iter().max_by(|a, b| {
        a.1.cmp(&b.1)
            .then(a.0.confident_share.total_cmp(&b.0.confident_share))
    }) else {
        return;
    };
    // Every judged split's suspects, the surest first across splits.
    let mut listed: Vec<&Suspect> = judged
        .iter()
        .flat_map(|(a, _)| a.suspects.iter().filter(|s| s.confident))
        .collect();
    listed.sort_by(|a, b| (b.confidence - b.label_prob).total_cmp(&(a.confidence - a.label_prob)));
    listed.truncate(MAX_LISTED);
    let mut metrics = BTreeMap::new();
    for (a, _) in &judged {
        let s = &a.split;
        metrics.insert(format!("label_error_share/{s}"), a.label_error_share);
        metrics.insert(format!("confident_share/{s}"), a.confident_share);
        metrics.insert(format!("samples/{s}"), a.n as f64);
        metrics.insert(format!("accuracy/{s}"), a.accuracy);
        if let Some(w) = worst_recall(a) {
            metrics.insert(format!("worst_recall/{s}"), w.recall.unwrap_or(0.0));
            metrics.insert(format!("worst_recall_class/{s}"), f64::from(w.class));
        }
    }
    let top = pair_summary(worst);
    let ids = listed
        .iter()
        .take(5)
        .map(|s| id_text(&s.id))
        .collect::<Vec<_>>()
        .join(", ");
    let top_k = if worst.top_k {
        " (top-k probabilities: a lower bound)"
    } else {
        ""
    };
    out.push(Finding {
        kind: Kind::LabelErrors,
        caused_by: None,
        severity,
        onset_step: Some(worst.step),
        title: format!(
            "About {} of the {} labels look wrong ({} suspects by confident learning)",
            fmt_pct(worst.confident_share),
            worst.split,
            worst.suspects.iter().filter(|s| s.confident).count()
        ),
        evidence: Evidence {
            series: Vec::new(),
            layer: None,
            metrics,
            summary: format!(
                "At step {}, on {} {} samples, the model gives the label ≤ {} while another class gets ≥ {} for {} of them{top_k}; confident learning (per-class thresholds) flags {} in all. It is {} accurate on the rest, so these are not its ordinary mistakes.{top} Surest suspects: {ids}.",
                fmt_step(worst.step),
                worst.n,
                worst.split,
                fmt_num(LABEL_PROB_MAX),
                fmt_num(OTHER_PROB_MIN),
                fmt_pct(worst.confident_share),
                fmt_pct(worst.label_error_share),
                fmt_pct(worst.clean_accuracy),
            ),
            samples: listed.into_iter().cloned().collect(),
        },
        cause: "Some samples carry the wrong label (annotation mistakes, a shifted label mapping or noisy scraping): a model that is accurate everywhere else is confident they belong to another class. Wrong labels in training teach the model the noise; in evaluation they cap and distort the measured accuracy.".into(),
        fixes: vec![
            "Inspect the listed samples (evidence, surest first) and relabel the ones that are wrong; the run page's predictions panel lists them with their given and predicted classes.".into(),
            "Find and prune the rest like the estimate does: cleanlab's find_label_issues(labels, pred_probs, filter_by=\"prune_by_noise_rate\") on out-of-sample probabilities (cross-validation), then retrain without (or with relabelled) issues.".into(),
            "If the suspects concentrate in one pair of classes (the confusion matrix), check the label mapping and the annotation guideline for those classes.".into(),
            "Until the labels are clean, train with a noise-robust loss (label smoothing 0.1, or generalised cross-entropy) and judge the model on a hand-checked subset.".into(),
        ],
    });
}

/// The labelled class with the lowest recall.
fn worst_recall(a: &Analysis) -> Option<&ClassStats> {
    a.classes.iter().filter(|c| c.support > 0).min_by(|x, y| {
        x.recall
            .unwrap_or(0.0)
            .total_cmp(&y.recall.unwrap_or(0.0))
            .then(x.class.cmp(&y.class))
    })
}

/// " Most are labelled 3 but predicted 5 (12)." when one pair holds at
/// least half of the confident suspects.
fn pair_summary(a: &Analysis) -> String {
    let mut pairs: BTreeMap<(u32, u32), usize> = BTreeMap::new();
    let mut total = 0;
    for s in a.suspects.iter().filter(|s| s.confident) {
        *pairs.entry((s.label, s.predicted)).or_default() += 1;
        total += 1;
    }
    match pairs
        .into_iter()
        .max_by_key(|(pair, k)| (*k, std::cmp::Reverse(*pair)))
    {
        Some(((l, p), k)) if 2 * k >= total && total >= 4 => {
            format!(" Most ({k} of {total}) are labelled {l} but look like {p}.")
        }
        _ => String::new(),
    }
}

/// A sample id as text: a string as it is, an integer in digits.
pub fn id_text(id: &serde_json::Value) -> String {
    match id {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn not_predicted(analyses: &[Analysis], out: &mut Diagnosis) {
    // (split, class, support), every split's.
    let missing: Vec<(&Analysis, &ClassStats)> = analyses
        .iter()
        .flat_map(|a| {
            a.classes
                .iter()
                .filter(|c| c.support >= MIN_CLASS_SUPPORT && c.predicted == 0)
                .map(move |c| (a, c))
        })
        .collect();
    let Some(&(first, _)) = missing.first() else {
        return;
    };
    let mut classes: Vec<u32> = missing.iter().map(|(_, c)| c.class).collect();
    classes.sort_unstable();
    classes.dedup();
    let list = missing
        .iter()
        .map(|(a, c)| format!("class {} in {} ({} samples)", c.class, a.split, c.support))
        .collect::<Vec<_>>()
        .join(", ");
    let names = classes
        .iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let metrics = missing
        .iter()
        .flat_map(|(a, c)| {
            [
                (format!("support/{}/{}", a.split, c.class), c.support as f64),
                (format!("accuracy/{}", a.split), a.accuracy),
            ]
        })
        .collect();
    out.push(Finding {
        kind: Kind::ClassNotPredicted,
        caused_by: None,
        severity: Severity::Warning,
        onset_step: missing.iter().map(|(a, _)| a.step).min(),
        title: if classes.len() == 1 {
            format!("The model never predicts class {names}")
        } else {
            format!("The model never predicts {} classes ({names})", classes.len())
        },
        evidence: Evidence {
            series: Vec::new(),
            layer: None,
            metrics,
            summary: format!(
                "At step {}, no sample of the {} predictions has these classes as its most probable one, although they are labelled: {list}. Their recall is 0.",
                fmt_step(first.step),
                missing
                    .iter()
                    .map(|(a, _)| a.split.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(" and "),
            ),
            samples: Vec::new(),
        },
        cause: "The model has learned to ignore these classes: they are rare (or absent) in the training data, their labels do not reach the output they are scored on (a label mapping that differs between training and evaluation, an output layer with fewer units), or training stopped before the model separated them.".into(),
        fixes: vec![
            format!("Check that class {names} has training samples and that its index means the same class in training and in this split (the same label encoder, or class_to_idx, for both)."),
            "Check that the output layer has one unit per class (num_classes) and that the argmax is taken over the class dimension.".into(),
            "If the class is rare in training, weight the loss by inverse class frequency (CrossEntropyLoss(weight=...)) or oversample it (WeightedRandomSampler).".into(),
            "If the predictions were logged early, log them again after more training before acting: an untrained model predicts few classes.".into(),
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::testutil::noise;
    use crate::diagnostics::{RunView, diagnose};
    use crate::record::Value;

    fn rec(labels: Vec<u32>, probs: Vec<Vec<f64>>) -> PredictionsRecord {
        PredictionsRecord {
            step: 900,
            split: "val".into(),
            labels,
            probs: probs
                .into_iter()
                .map(|r| r.into_iter().map(Value).collect())
                .collect(),
            classes: None,
            num_classes: None,
            ids: None,
            time: None,
        }
    }

    /// `n` samples of `k` balanced classes from a model with accuracy
    /// about `acc` whose mistakes are unsure (label keeps 0.3, the
    /// mistaken class 0.45), except a `confident_wrong` share of samples it
    /// gets confidently wrong (0.03 on the label, 0.9 elsewhere, as an
    /// over-confident net does); then `flipped` of the labels are replaced
    /// by another class (the model still predicts the true one).
    fn synthetic(
        n: usize,
        k: u32,
        acc: f64,
        confident_wrong: f64,
        flipped: f64,
    ) -> PredictionsRecord {
        let mut labels = Vec::new();
        let mut probs = Vec::new();
        for i in 0..n {
            let truth = (i as u32) % k;
            let u = (noise(i * 7 + 1) + 1.0) / 2.0;
            let other = (truth + 1 + (i as u32 / k) % (k - 1)) % k;
            let (top, p_top, p_truth) = if u < confident_wrong {
                (other, 0.9, 0.03)
            } else if u < 1.0 - acc {
                (other, 0.45, 0.3)
            } else {
                // Over-confident when right, like a trained net: mostly
                // near 0.98, a tail down to 0.58.
                (
                    truth,
                    0.98 - 0.4 * ((noise(i * 3 + 2) + 1.0) / 2.0).powi(2),
                    0.0,
                )
            };
            let mut row = vec![0.0; k as usize];
            row[top as usize] = p_top;
            if top != truth {
                row[truth as usize] = p_truth;
            }
            let used: f64 = row.iter().sum();
            let rest = (1.0 - used) / (k as f64 - if top == truth { 1.0 } else { 2.0 });
            for (c, v) in row.iter_mut().enumerate() {
                if c as u32 != top && c as u32 != truth {
                    *v = rest;
                }
            }
            let v = (noise(i * 11 + 5) + 1.0) / 2.0;
            let label = if v < flipped {
                (truth + 1 + (i as u32) % (k - 1)) % k
            } else {
                truth
            };
            labels.push(label);
            probs.push(row);
        }
        rec(labels, probs)
    }

    fn view(p: PredictionsRecord) -> RunView {
        RunView {
            predictions: vec![p],
            ..RunView::default()
        }
    }

    #[test]
    fn confusion_matrix_precision_recall_and_thresholds() {
        // Labels 0,0,0,1,1,2; predictions 0,0,1,1,1,1.
        let p = rec(
            vec![0, 0, 0, 1, 1, 2],
            vec![
                vec![0.8, 0.1, 0.1],
                vec![0.6, 0.3, 0.1],
                vec![0.3, 0.6, 0.1],
                vec![0.1, 0.9, 0.0],
                vec![0.2, 0.7, 0.1],
                vec![0.1, 0.5, 0.4],
            ],
        );
        let a = analyse(&p);
        assert_eq!(a.n, 6);
        assert_eq!(a.num_classes, 3);
        assert_eq!(
            a.confusion,
            vec![(0, 0, 2), (0, 1, 1), (1, 1, 2), (2, 1, 1)]
        );
        let c0 = &a.classes[0];
        assert_eq!((c0.support, c0.predicted, c0.correct), (3, 2, 2));
        assert_eq!(c0.precision, Some(1.0));
        assert!((c0.recall.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // t_0 = mean(0.8, 0.6, 0.3); t_1 = mean(0.9, 0.7); t_2 = 0.4.
        assert!((c0.threshold.unwrap() - 1.7 / 3.0).abs() < 1e-12);
        assert!((a.classes[1].threshold.unwrap() - 0.8).abs() < 1e-12);
        assert_eq!(a.classes[2].predicted, 0);
        assert_eq!(a.classes[2].precision, None);
        assert!((a.accuracy - 4.0 / 6.0).abs() < 1e-12);
        // Sample 2 (label 0): p_0 = 0.3 < t_0, p_1 = 0.6 < t_1 = 0.8 → not
        // a suspect; sample 5 (label 2): p_2 = 0.4 ≥ t_2 = 0.4 and p_1 =
        // 0.5 < 0.8 → its own class. No suspects.
        assert!(a.suspects.is_empty(), "{:?}", a.suspects);
    }

    #[test]
    fn a_sample_the_model_is_sure_about_is_a_suspect_ranked_by_margin() {
        let mut labels = vec![0; 5];
        labels.extend([1; 5]);
        let mut probs: Vec<Vec<f64>> = (0..5).map(|_| vec![0.9, 0.1]).collect();
        probs.extend((0..5).map(|_| vec![0.1, 0.9]));
        // Sample 1 is labelled 0 but looks like 1 (margin 0.96); sample 7
        // is labelled 1 and looks like 0 (margin 0.7).
        probs[1] = vec![0.02, 0.98];
        probs[7] = vec![0.85, 0.15];
        let mut p = rec(labels, probs);
        p.ids = Some(
            (0..10)
                .map(|i| serde_json::json!(format!("s{i}")))
                .collect(),
        );
        let a = analyse(&p);
        let ids: Vec<_> = a.suspects.iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids, vec![serde_json::json!("s1"), serde_json::json!("s7")]);
        assert_eq!((a.suspects[0].label, a.suspects[0].predicted), (0, 1));
        assert!(a.suspects[0].confident);
        // 0.15 on the label is not "all but ruled out".
        assert!(!a.suspects[1].confident);
        assert!((a.label_error_share - 0.2).abs() < 1e-12);
    }

    #[test]
    fn top_k_takes_unlisted_probabilities_at_their_upper_bound() {
        // 1000 classes, top-2 listed. Sample 0 labelled 7, its label not
        // listed: p_7 ≤ min(0.04, 1 − 0.96) = 0.04.
        let p = PredictionsRecord {
            step: 3,
            split: "val".into(),
            labels: vec![7, 7, 7, 9],
            probs: vec![
                vec![Value(0.92), Value(0.04)],
                vec![Value(0.9), Value(0.05)],
                vec![Value(0.8), Value(0.1)],
                vec![Value(0.9), Value(0.03)],
            ],
            classes: Some(vec![vec![9, 3], vec![7, 9], vec![7, 3], vec![9, 7]]),
            num_classes: Some(1000),
            ids: None,
            time: None,
        };
        let a = analyse(&p);
        assert!(a.top_k);
        assert_eq!(a.num_classes, 1000);
        let c7 = a.classes.iter().find(|c| c.class == 7).unwrap();
        assert!((c7.threshold.unwrap() - (0.04 + 0.9 + 0.8) / 3.0).abs() < 1e-12);
        assert_eq!(a.suspects.len(), 1);
        let s = &a.suspects[0];
        assert_eq!(
            (s.id.clone(), s.label, s.predicted),
            (serde_json::json!(0), 7, 9)
        );
        assert!(s.label_prob_bound && (s.label_prob - 0.04).abs() < 1e-12);
    }

    #[test]
    fn healthy_models_raise_no_label_errors() {
        // 5 % and 10 % validation error, unsure mistakes, plus 2 % confident
        // mistakes (over-confident net): at most info.
        // (At 90 % with 5 % confident mistakes the share is 5.1 %: info.)
        for (acc, cw) in [(0.95, 0.02), (0.9, 0.03), (0.93, 0.0), (0.9, 0.05)] {
            let a = analyse(&synthetic(2000, 10, acc, cw, 0.0));
            assert!(
                a.confident_share < WARN_SHARE,
                "{acc}: {}",
                a.confident_share
            );
            let d = diagnose(&view(synthetic(2000, 10, acc, cw, 0.0)));
            assert!(d.raised().next().is_none(), "{acc}: {:#?}", d.findings);
        }
    }

    #[test]
    fn twenty_percent_flipped_labels_are_an_error_with_their_ids() {
        let p = synthetic(2000, 10, 0.95, 0.01, 0.2);
        let flipped: Vec<usize> = (0..2000)
            .filter(|&i| p.labels[i] != (i as u32) % 10)
            .collect();
        let d = diagnose(&view(p));
        let f = d.get(Kind::LabelErrors).expect("label_errors");
        assert_eq!(f.severity, Severity::Error, "{f:#?}");
        let share = f.evidence.metrics["confident_share/val"];
        assert!((0.15..0.25).contains(&share), "{share}");
        assert_eq!(f.evidence.samples.len(), MAX_LISTED);
        // The listed suspects are flipped samples.
        for s in &f.evidence.samples {
            let i = s.id.as_u64().unwrap() as usize;
            assert!(flipped.contains(&i), "{s:?}");
        }
        assert!(f.fixes[0].contains("relabel"));
        assert!(!f.fixes.iter().any(|x| crate::diagnostics::raises_lr(x)));
    }

    #[test]
    fn ten_percent_flipped_labels_are_a_warning() {
        let d = diagnose(&view(synthetic(2000, 10, 0.95, 0.01, 0.1)));
        let f = d.get(Kind::LabelErrors).expect("label_errors");
        assert_eq!(f.severity, Severity::Warning, "{f:#?}");
    }

    #[test]
    fn a_weak_model_or_a_small_split_is_not_judged() {
        // 60 % accuracy, a third of the mistakes confident: not label noise.
        let d = diagnose(&view(synthetic(2000, 10, 0.6, 0.15, 0.0)));
        assert!(d.get(Kind::LabelErrors).is_none(), "{:#?}", d.findings);
        assert!(
            d.notes.iter().any(|n| n.contains("too weak")),
            "{:?}",
            d.notes
        );
        let d = diagnose(&view(synthetic(60, 3, 0.95, 0.0, 0.3)));
        assert!(d.get(Kind::LabelErrors).is_none());
        assert!(
            d.notes.iter().any(|n| n.contains("too few samples")),
            "{:?}",
            d.notes
        );
    }

    #[test]
    fn a_class_never_predicted_is_named() {
        // Class 2's samples are all predicted as 1.
        let mut p = synthetic(600, 3, 1.0, 0.0, 0.0);
        for (label, row) in p.labels.iter().zip(p.probs.iter_mut()) {
            if *label == 2 {
                *row = vec![Value(0.1), Value(0.6), Value(0.3)];
            }
        }
        let a = analyse(&p);
        let c2 = a.classes.iter().find(|c| c.class == 2).unwrap();
        assert_eq!((c2.predicted, c2.recall), (0, Some(0.0)));
        let d = diagnose(&view(p));
        let f = d.get(Kind::ClassNotPredicted).expect("class_not_predicted");
        assert_eq!(f.severity, Severity::Warning);
        assert!(f.title.contains("class 2"), "{}", f.title);
        assert_eq!(f.evidence.metrics["support/val/2"], 200.0);
        // The collapsed class is the model's problem, not 200 wrong labels.
        assert!(
            d.get(Kind::LabelErrors)
                .is_none_or(|f| !f.severity.is_raised()),
            "{:#?}",
            d.findings
        );
        // A healthy set predicts every class.
        let d = diagnose(&view(synthetic(600, 3, 0.9, 0.0, 0.0)));
        assert!(d.get(Kind::ClassNotPredicted).is_none());
    }

    #[test]
    fn validation_is_the_preferred_split() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(
            preferred_split(&s(&["train", "Validation", "test"])),
            Some("Validation")
        );
        assert_eq!(preferred_split(&s(&["train", "holdout"])), Some("holdout"));
        assert_eq!(preferred_split(&s(&["train"])), Some("train"));
        assert_eq!(preferred_split(&[]), None);
    }

    #[test]
    fn wilson_lower_bound() {
        assert_eq!(wilson_lower(0.0, 0, Z), 0.0);
        let lo = wilson_lower(0.1, 1000, 2.0);
        assert!((0.08..0.1).contains(&lo), "{lo}");
        assert!(wilson_lower(0.1, 30, 2.0) < 0.04);
    }
}
