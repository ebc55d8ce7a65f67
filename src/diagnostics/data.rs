//! Data problems, from the `dataset` summaries (split sizes, missing cells,
//! per-feature mean/std, class counts). Without dataset records these
//! detectors stay silent.
//!
//! - **Missing values**: any split reports NaN cells → `warning`, `error` when
//!   the loss is non-finite too (the NaNs reached the model).
//! - **Class imbalance** (TDC: normalised perplexity of the label
//!   distribution (e^H − 1)/(K − 1) < 0.5): flagged when that holds *or* the
//!   smallest class has ≤ 20% of its uniform share (catches "a few rare
//!   classes", which perplexity misses: five classes at 5% of ten still have
//!   perplexity 0.56). Either way the deficit must be statistically clear —
//!   the smallest class ≥ 4 binomial standard deviations below its uniform
//!   count, or the largest ≥ 4 above it (one class dominating a handful of
//!   samples of each other class) — so small random subsets (a tiny
//!   training set with 4 vs 16 samples per class) are not flagged.
//! - **Distribution shift** (research §1 "Train/test mismatch": no training
//!   paper has a drift rule; deepchecks/PSI-style per-feature drift): with
//!   feature means/stds of both splits in training-std units, a feature is
//!   shifted when its standardised mean difference is ≥ 0.5 *and* ≥ 4
//!   standard errors (Welch), or its std ratio is ≥ 2× either way and
//!   significant. Shift = ≥ 25% of the (non-constant) features shifted. Also:
//!   validation features standardised to *exactly* mean 0 / std 1 (the scaler
//!   was fit on validation data), and label distributions that differ
//!   (validation classes unseen in training, total variation ≥ 0.3). A shift
//!   that does not hurt is not an error of the run, so it is `warning` only
//!   with a validation performance gap (train − val accuracy ≥ 0.1 or val loss
//!   ≥ 1.5× train loss) or a massive shift (median |SMD| ≥ 1); otherwise `info`
//!   — and `info` too when the training labels are imbalanced (the training
//!   means are then the majority class's, not a drift of the inputs).

use std::collections::BTreeMap;

use super::context::Ctx;
use super::stats::{capitalise, fmt_num, fmt_pct, median};
use super::{Diagnosis, Evidence, Finding, Kind, Severity};
use crate::record::DatasetRecord;

/// Standardised mean difference from which a feature counts as shifted.
pub const SHIFT_SMD: f64 = 0.5;
/// Required significance (standard errors) of a feature shift or class deficit.
const Z_MIN: f64 = 4.0;
/// Share of shifted features that makes a distribution shift.
const SHIFT_SHARE: f64 = 0.25;

pub(crate) fn detect(ctx: &Ctx, out: &mut Diagnosis) {
    missing(ctx, out);
    let imbalanced = imbalance(ctx, out);
    shift(ctx, out, imbalanced);
}

fn missing(ctx: &Ctx, out: &mut Diagnosis) {
    let per_split: Vec<(&str, u64, Option<u64>)> = ctx
        .view
        .datasets
        .iter()
        .filter_map(|d| {
            d.missing
                .filter(|m| *m > 0)
                .map(|m| (d.split.as_str(), m, d.n))
        })
        .collect();
    if per_split.is_empty() {
        return;
    }
    let total: u64 = per_split.iter().map(|x| x.1).sum();
    let nan_loss = ctx.loss_nonfinite();
    let list = per_split
        .iter()
        .map(|(s, m, n)| {
            format!(
                "{s}: {m}{}",
                n.map(|n| format!(" cells in {n} samples"))
                    .unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    out.push(Finding {
        kind: Kind::MissingValues,
        caused_by: None,
        severity: if nan_loss { Severity::Error } else { Severity::Warning },
        onset_step: ctx.train_loss.and_then(|l| l.series.steps.first().copied()),
        title: format!("{total} missing (NaN) values in the {} data", per_split.iter().map(|x| x.0).collect::<Vec<_>>().join(" and ")),
        evidence: Evidence {
            series: Vec::new(),
            layer: None,
            metrics: per_split.iter().map(|(s, m, _)| (format!("missing/{s}"), *m as f64)).collect(),
            summary: format!("Dataset summaries report missing cells ({list}){}.", if nan_loss { "; the loss is non-finite" } else { "" }),
            samples: Vec::new(),
        },
        cause: if nan_loss {
            "NaN inputs propagate through every layer: the outputs, the loss and all gradients become NaN and the weights are destroyed by the first update.".into()
        } else {
            "Missing values reach the model unless the pipeline imputes them; a single NaN input makes the batch's loss and gradients NaN.".into()
        },
        fixes: vec![
            "Impute missing values (e.g. SimpleImputer(strategy=\"median\") fit on the training split, applied to all splits) or drop incomplete rows.".into(),
            "Add a check before training: assert not np.isnan(X).any() (torch: torch.isnan(x).any()).".into(),
            "If NaN means \"unknown\", add a missing-indicator feature next to the imputed value.".into(),
        ],
    });
}

fn class_counts(d: &DatasetRecord) -> Option<Vec<(String, f64)>> {
    let cc = d.class_counts.as_ref()?;
    let v: Vec<(String, f64)> = cc
        .iter()
        .filter_map(|(k, v)| {
            v.as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .map(|x| (k.clone(), x))
        })
        .collect();
    (v.len() >= 2).then_some(v)
}

/// Returns whether the training labels are imbalanced.
fn imbalance(ctx: &Ctx, out: &mut Diagnosis) -> bool {
    let Some(counts) = ctx.view.dataset("train").and_then(class_counts) else {
        return false;
    };
    let k = counts.len() as f64;
    let n: f64 = counts.iter().map(|c| c.1).sum();
    if n <= 0.0 {
        return false;
    }
    let entropy: f64 = -counts
        .iter()
        .map(|c| c.1 / n)
        .filter(|p| *p > 0.0)
        .map(|p| p * p.ln())
        .sum::<f64>();
    let perplexity = (entropy.exp() - 1.0) / (k - 1.0);
    let (min_class, min_count) = counts
        .iter()
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    let (max_class, max_count) = counts
        .iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .cloned()
        .unwrap_or_default();
    let uniform = 1.0 / k;
    let share_ratio = (min_count / n) / uniform;
    // How clearly the counts depart from uniform: the smallest class's
    // deficit, or the largest class's excess (one class dominating a few
    // samples each of the others: the deficits are small numbers, the
    // excess is not).
    let sd = (n * uniform * (1.0 - uniform)).sqrt();
    let z = ((n * uniform - min_count) / sd).max((max_count - n * uniform) / sd);
    if !((perplexity < 0.5 || share_ratio <= 0.2) && z >= Z_MIN) {
        return false;
    }
    let rare: Vec<&str> = counts
        .iter()
        .filter(|c| c.1 / n <= 0.5 * uniform)
        .map(|c| c.0.as_str())
        .collect();
    let mut metrics = BTreeMap::new();
    metrics.insert("normalised_perplexity".into(), perplexity);
    metrics.insert("majority_share".into(), max_count / n);
    metrics.insert("minority_share".into(), min_count / n);
    metrics.insert(
        "imbalance_ratio".into(),
        if min_count > 0.0 {
            max_count / min_count
        } else {
            f64::INFINITY
        },
    );
    let val_note = match (
        ctx.val_acc.and_then(|v| ctx.epoch_tail(v.series, 3)),
        ctx.view.dataset("val").and_then(class_counts),
    ) {
        (Some(acc), Some(vc)) => {
            let vn: f64 = vc.iter().map(|c| c.1).sum();
            let vmax = vc
                .iter()
                .find(|c| c.0 == max_class)
                .map(|c| c.1 / vn.max(1.0));
            metrics.insert("val_acc".into(), acc);
            vmax.map(|m| format!(" Validation accuracy is {} where always predicting class {max_class} would score {}.", fmt_pct(acc), fmt_pct(m))).unwrap_or_default()
        }
        _ => String::new(),
    };
    let weight = if min_count > 0.0 {
        n / (k * min_count)
    } else {
        f64::NAN
    };
    out.push(Finding {
        kind: Kind::ClassImbalance,
        caused_by: None,
        severity: Severity::Warning,
        onset_step: None,
        title: format!(
            "Training labels are imbalanced: class {max_class} has {} of the samples, class {min_class} {}",
            fmt_pct(max_count / n),
            fmt_pct(min_count / n)
        ),
        evidence: Evidence {
            series: Vec::new(),
            layer: None,
            metrics,
            summary: format!(
                "Class counts {}; normalised label perplexity {} (1 = balanced){}.{val_note}",
                counts.iter().map(|c| format!("{}: {}", c.0, c.1)).collect::<Vec<_>>().join(", "),
                fmt_num(perplexity),
                if rare.is_empty() { String::new() } else { format!("; rare classes: {}", rare.join(", ")) }
            ),
            samples: Vec::new(),
        },
        cause: format!("The loss is dominated by class {max_class}: the model can score well on training data while rarely predicting the minority classes."),
        fixes: vec![
            if weight.is_finite() {
                format!("Weight the loss by inverse class frequency (class {min_class}: weight {}), e.g. CrossEntropyLoss(weight=...) / class_weight=\"balanced\".", fmt_num(weight))
            } else {
                "Weight the loss by inverse class frequency (CrossEntropyLoss(weight=...) / class_weight=\"balanced\").".into()
            },
            "Resample: oversample minority classes (WeightedRandomSampler) or undersample the majority.".into(),
            "Collect more minority-class data; report balanced accuracy and per-class recall instead of accuracy.".into(),
            "Initialise the output bias to the log class priors.".into(),
        ],
    });
    true
}

/// A validation performance gap: train − val accuracy ≥ 0.1, or val loss ≥
/// 1.5× train loss (epoch level, last 3 evaluations).
fn performance_gap(ctx: &Ctx) -> Option<String> {
    if let (Some(t), Some(v)) = (
        ctx.train_acc.and_then(|n| ctx.epoch_tail(n.series, 3)),
        ctx.val_acc.and_then(|n| ctx.epoch_tail(n.series, 3)),
    ) {
        return (t - v >= 0.1).then(|| {
            format!(
                "validation accuracy {} vs training {}",
                fmt_pct(v),
                fmt_pct(t)
            )
        });
    }
    if let (Some(t), Some(v)) = (
        ctx.train_loss.and_then(|n| ctx.epoch_tail(n.series, 3)),
        ctx.val_loss.and_then(|n| ctx.epoch_tail(n.series, 3)),
    ) && t > 0.0
    {
        return (v >= 1.5 * t)
            .then(|| format!("validation loss {} vs training {}", fmt_num(v), fmt_num(t)));
    }
    None
}

fn values(v: &Option<Vec<crate::record::Value>>) -> Vec<f64> {
    v.as_ref()
        .map(|v| v.iter().map(|x| x.0).collect())
        .unwrap_or_default()
}

fn shift(ctx: &Ctx, out: &mut Diagnosis, imbalanced: bool) {
    let (Some(train), Some(val)) = (ctx.view.dataset("train"), ctx.view.dataset("val")) else {
        return;
    };
    let (mt, st, mv, sv) = (
        values(&train.feature_mean),
        values(&train.feature_std),
        values(&val.feature_mean),
        values(&val.feature_std),
    );
    let n_t = train.n.unwrap_or(30).max(2) as f64;
    let n_v = val.n.unwrap_or(30).max(2) as f64;
    let mut eligible = 0usize;
    let mut shifted: Vec<(usize, f64)> = Vec::new();
    let mut smds = Vec::new();
    // |log| of the validation/training std ratio per feature.
    let mut log_ratios = Vec::new();
    if mt.len() == mv.len() && st.len() == mt.len() && sv.len() == mt.len() {
        for j in 0..mt.len() {
            let (a, s, b, r) = (mt[j], st[j], mv[j], sv[j]);
            if !(a.is_finite() && s.is_finite() && b.is_finite() && r.is_finite()) || s <= 1e-12 {
                continue;
            }
            eligible += 1;
            let smd = (b - a) / s;
            smds.push(smd.abs());
            let se = ((r / s).powi(2) / n_v + 1.0 / n_t).sqrt();
            let mean_shift = smd.abs() >= SHIFT_SMD && smd.abs() >= Z_MIN * se;
            let log_ratio = if r > 0.0 {
                (r / s).ln()
            } else {
                f64::NEG_INFINITY
            };
            if log_ratio.is_finite() {
                log_ratios.push(log_ratio.abs());
            }
            let scale_shift = log_ratio.abs() >= 2f64.ln()
                && log_ratio.abs() >= Z_MIN * (0.5 / n_v + 0.5 / n_t).sqrt();
            if mean_shift || scale_shift {
                shifted.push((j, smd));
            }
        }
    }
    let share = if eligible > 0 {
        shifted.len() as f64 / eligible as f64
    } else {
        0.0
    };
    let median_smd = median(&smds).unwrap_or(0.0);
    // Validation standardised on itself: every mean ~0 and std ~1 (or 0).
    let refit = eligible >= 2
        && n_v >= 10.0
        && mv.iter().all(|m| m.is_finite() && m.abs() <= 1e-6)
        && sv
            .iter()
            .all(|s| s.is_finite() && ((s - 1.0).abs() <= 1e-3 || *s == 0.0));
    // Label shift.
    let label = if imbalanced {
        None
    } else {
        match (class_counts(train), class_counts(val)) {
            (Some(tc), Some(vc)) => {
                let tn: f64 = tc.iter().map(|c| c.1).sum();
                let vn: f64 = vc.iter().map(|c| c.1).sum();
                let unseen: Vec<String> = vc
                    .iter()
                    .filter(|(k, c)| {
                        *c > 0.0 && tc.iter().find(|t| &t.0 == k).is_none_or(|t| t.1 == 0.0)
                    })
                    .map(|c| c.0.clone())
                    .collect();
                let mut keys: Vec<&String> = tc
                    .iter()
                    .map(|c| &c.0)
                    .chain(vc.iter().map(|c| &c.0))
                    .collect();
                keys.sort();
                keys.dedup();
                let get = |v: &[(String, f64)], k: &String| {
                    v.iter().find(|c| &c.0 == k).map(|c| c.1).unwrap_or(0.0)
                };
                let tv = if tn > 0.0 && vn > 0.0 {
                    0.5 * keys
                        .iter()
                        .map(|k| (get(&tc, k) / tn - get(&vc, k) / vn).abs())
                        .sum::<f64>()
                } else {
                    0.0
                };
                (!unseen.is_empty() || tv >= 0.3).then_some((tv, unseen))
            }
            _ => None,
        }
    };
    let feature_shift = share >= SHIFT_SHARE && !shifted.is_empty();
    if !(feature_shift || refit || label.is_some()) {
        return;
    }
    let gap = performance_gap(ctx);
    // Massive: the typical feature moved by a training std or more, or its
    // spread changed ×2 or more either way — either puts most validation
    // samples where the training data has few.
    let median_scale = median(&log_ratios).map_or(1.0, f64::exp);
    let massive = feature_shift && (median_smd >= 1.0 || median_scale >= 2.0);
    let unseen_classes = label.as_ref().is_some_and(|l| !l.1.is_empty());
    // An imbalanced training split's feature statistics are mostly its
    // majority class's: a balanced validation split differs from them with
    // no drift of the inputs at all. The imbalance finding is the cause.
    let by_composition = imbalanced && !refit && !unseen_classes;
    let harmful = !by_composition && (gap.is_some() || massive || unseen_classes);
    let severity = if !harmful {
        Severity::Info
    } else if massive && gap.is_some() {
        Severity::Error
    } else {
        Severity::Warning
    };
    let mut metrics = BTreeMap::new();
    let mut facts = Vec::new();
    let mut title = String::new();
    if feature_shift {
        metrics.insert("shifted_feature_share".into(), share);
        metrics.insert("median_abs_smd".into(), median_smd);
        metrics.insert("median_std_ratio".into(), median_scale);
        let top: Vec<String> = {
            let mut s = shifted.clone();
            s.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()));
            s.iter()
                .take(3)
                .map(|(j, d)| {
                    format!(
                        "feature {j}: {}{} σ",
                        if *d >= 0.0 { "+" } else { "" },
                        fmt_num(*d)
                    )
                })
                .collect()
        };
        facts.push(format!(
            "{} of {eligible} features differ between train and validation ({})",
            shifted.len(),
            top.join(", ")
        ));
        title = format!(
            "Validation data is shifted: {} of {eligible} features differ from training (median |Δmean| {} σ, spread ×{})",
            shifted.len(),
            fmt_num(median_smd),
            fmt_num(median_scale)
        );
    }
    if refit {
        facts.push("validation features have exactly mean 0 and std 1, i.e. they were standardised with their own statistics".into());
        if title.is_empty() {
            title =
                "Validation features were standardised on themselves (exact mean 0, std 1)".into();
        }
    }
    if let Some((tv, unseen)) = &label {
        metrics.insert("label_total_variation".into(), *tv);
        facts.push(if unseen.is_empty() {
            format!(
                "label distributions differ (total variation {})",
                fmt_num(*tv)
            )
        } else {
            format!(
                "validation has classes never seen in training ({})",
                unseen.join(", ")
            )
        });
        if title.is_empty() {
            title = if unseen.is_empty() {
                format!(
                    "Train and validation label distributions differ (total variation {})",
                    fmt_num(*tv)
                )
            } else {
                format!(
                    "Validation contains classes absent from training: {}",
                    unseen.join(", ")
                )
            };
        }
    }
    if by_composition {
        facts.push("the training labels are imbalanced, which alone moves the training feature statistics towards the majority class".into());
    }
    if let Some(g) = &gap {
        facts.push(g.clone());
    }
    out.push(Finding {
        kind: Kind::DistributionShift,
        caused_by: None,
        severity,
        onset_step: None,
        title,
        evidence: Evidence {
            series: Vec::new(),
            layer: None,
            metrics,
            summary: format!("{}.", capitalise(&facts.join("; "))),
            samples: Vec::new(),
        },
        cause: if refit {
            "Preprocessing was fit separately on the validation split, so the same raw value maps to different inputs in training and validation.".into()
        } else if feature_shift {
            "Training and validation inputs come from different distributions (different source or time, or preprocessing fit on one split only), so what the model learned does not transfer.".into()
        } else {
            "The split does not preserve the label distribution (non-stratified or class-disjoint split).".into()
        },
        fixes: vec![
            "Fit preprocessing (scalers, encoders, imputers) on the training split only and apply the same fitted transform to validation/test.".into(),
            "Check how the split was made: use a random stratified split from the same source (or make the training data cover the validation conditions).".into(),
            "If the shift is real (deployment differs), collect training data from the target distribution or use domain adaptation.".into(),
        ],
    });
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{curve, healthy, view};
    use super::super::{Kind, RunView, Series, Severity, diagnose};
    use crate::record::{DatasetRecord, Value};

    fn ds(split: &str, n: u64, counts: &[u64], mean: &[f64], std: &[f64]) -> DatasetRecord {
        DatasetRecord {
            split: split.into(),
            n: Some(n),
            n_features: Some(mean.len() as u64),
            missing: Some(0),
            feature_mean: Some(mean.iter().map(|x| Value(*x)).collect()),
            feature_std: Some(std.iter().map(|x| Value(*x)).collect()),
            class_counts: (!counts.is_empty()).then(|| {
                counts
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (i.to_string(), serde_json::json!(c)))
                    .collect()
            }),
            ..Default::default()
        }
    }

    fn with(datasets: Vec<DatasetRecord>) -> RunView {
        let mut v = healthy(10, 20);
        v.datasets = datasets;
        v
    }

    #[test]
    fn one_dominant_class_is_imbalance_not_a_shift() {
        // 10 classes: class 0 has 300 training samples, the others 8 each
        // (its standardisation is mostly class 0's); validation is balanced
        // and its features sit away from the majority class's. The label
        // distribution is the finding; the feature "shift" is its artefact.
        let mut counts = vec![300u64];
        counts.extend([8; 9]);
        let f = 16;
        let train = ds("train", 372, &counts, &vec![0.0; f], &vec![1.0; f]);
        let val = ds("val", 450, &[45; 10], &vec![0.9; f], &vec![1.6; f]);
        let d = diagnose(&with(vec![train, val]));
        let imb = d.get(Kind::ClassImbalance).expect("imbalance");
        assert!(imb.severity.is_raised());
        assert!(imb.title.contains("class 0"), "{}", imb.title);
        assert!(
            d.get(Kind::DistributionShift)
                .is_none_or(|s| !s.severity.is_raised()),
            "{:#?}",
            d.findings
        );
    }

    #[test]
    fn a_spread_several_times_the_training_one_is_a_massive_shift() {
        // Same means, every validation feature 4× as spread: most validation
        // samples lie where the training data has none, even without a
        // performance gap yet.
        let f = 12;
        let train = ds("train", 600, &[], &vec![0.5; f], &vec![1.0; f]);
        let val = ds("val", 200, &[], &vec![0.5; f], &vec![4.0; f]);
        let d = diagnose(&with(vec![train.clone(), val]));
        let s = d.get(Kind::DistributionShift).expect("shift");
        assert!(s.severity.is_raised(), "{s:#?}");
        assert!(s.evidence.metrics["median_std_ratio"] >= 3.9);
        // A spread 1.3× is not: noise of the split, not a shift.
        let mild = ds("val", 200, &[], &vec![0.5; f], &vec![1.3; f]);
        assert!(
            diagnose(&with(vec![train, mild]))
                .get(Kind::DistributionShift)
                .is_none()
        );
    }

    #[test]
    fn a_shift_explained_by_imbalance_is_info() {
        let mut counts = vec![134u64];
        counts.extend([5; 9]);
        let massive = |train_counts: &[u64]| {
            let train = ds(
                "train",
                train_counts.iter().sum(),
                train_counts,
                &[0.0; 4],
                &[1.0; 4],
            );
            let val = ds("val", 450, &[45; 10], &[1.5; 4], &[1.0; 4]);
            diagnose(&with(vec![train, val]))
        };
        let d = massive(&counts);
        assert!(d.get(Kind::ClassImbalance).is_some());
        assert_eq!(
            d.get(Kind::DistributionShift).map(|f| f.severity),
            Some(Severity::Info)
        );
        // The same shift with balanced training labels is a warning.
        let d = massive(&[18; 10]);
        assert!(d.get(Kind::ClassImbalance).is_none());
        assert_eq!(
            d.get(Kind::DistributionShift).map(|f| f.severity),
            Some(Severity::Warning)
        );
    }

    #[test]
    fn imbalance_rules() {
        let z = [0.0; 4];
        let o = [1.0; 4];
        let v = with(vec![ds("train", 636, &[568, 25, 23, 20], &z, &o)]);
        assert!(diagnose(&v).get(Kind::ClassImbalance).is_some());
        // Five of ten classes at 5%: perplexity 0.56, but the rare classes are flagged.
        let counts: Vec<u64> = (0..10).map(|c| if c < 5 { 135 } else { 7 }).collect();
        assert!(
            diagnose(&with(vec![ds("train", 710, &counts, &z, &o)]))
                .get(Kind::ClassImbalance)
                .is_some()
        );
        // One class dominating, the nine others 5 samples each: the deficit
        // of each small class is only ~3 sd, the majority's excess ~29.
        let mut dominated = vec![134u64];
        dominated.extend([5; 9]);
        assert!(
            diagnose(&with(vec![ds("train", 179, &dominated, &z, &o)]))
                .get(Kind::ClassImbalance)
                .is_some()
        );
        // Natural mild imbalance and small random subsets are fine.
        let fine: [(u64, &[u64]); 3] = [
            (426, &[159, 267]),
            (120, &[4, 10, 15, 16, 13, 10, 15, 14, 9, 14]),
            (50, &[1, 5, 8, 6, 5, 4, 7, 5, 4, 5]),
        ];
        for (n, counts) in fine {
            assert!(
                diagnose(&with(vec![ds("train", n, counts, &z, &o)]))
                    .get(Kind::ClassImbalance)
                    .is_none(),
                "{counts:?}"
            );
        }
    }

    #[test]
    fn shifted_validation_features() {
        let z = vec![0.0; 13];
        let o = vec![1.0; 13];
        let shifted: Vec<f64> = (0..13).map(|i| 1.8 + 0.02 * i as f64).collect();
        let mut v = with(vec![
            ds("train", 133, &[44, 53, 36], &z, &o),
            ds("val", 45, &[15, 18, 12], &shifted, &o),
        ]);
        v.scalars.insert(
            "val/acc".into(),
            Series::from_points((1..=10).map(|e| ((e * 20) as u64, 0.33))),
        );
        let f = diagnose(&v)
            .get(Kind::DistributionShift)
            .cloned()
            .expect("shift");
        assert!(f.severity >= Severity::Warning);
        // Sampling noise of a small validation set is not a shift.
        let noise: Vec<f64> = (0..13)
            .map(|i| if i % 2 == 0 { 0.25 } else { -0.2 })
            .collect();
        let w = with(vec![
            ds("train", 133, &[44, 53, 36], &z, &o),
            ds("val", 45, &[15, 18, 12], &noise, &o),
        ]);
        assert!(diagnose(&w).get(Kind::DistributionShift).is_none());
    }

    #[test]
    fn refit_scaler_without_harm_is_info() {
        let z = vec![0.0; 8];
        let o = vec![1.0; 8];
        let v = with(vec![
            ds("train", 500, &[250, 250], &z, &o),
            ds("val", 100, &[50, 50], &z, &o),
        ]);
        let d = diagnose(&v);
        assert_eq!(
            d.get(Kind::DistributionShift).map(|f| f.severity),
            Some(Severity::Info)
        );
    }

    #[test]
    fn missing_values() {
        let mut v = view(&[("train/loss", curve(10, 1, |_| f64::NAN))]);
        v.datasets.push(DatasetRecord {
            split: "train".into(),
            missing: Some(152),
            n: Some(426),
            ..Default::default()
        });
        let d = diagnose(&v);
        let f = d.get(Kind::MissingValues).expect("missing");
        assert_eq!(f.severity, Severity::Error);
        assert!(f.title.starts_with("152 missing"), "{}", f.title);
        assert!(d.get(Kind::Divergence).unwrap().cause.contains("missing"));
    }
}
