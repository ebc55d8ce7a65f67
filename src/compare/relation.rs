//! How strongly a hyperparameter relates to a metric across runs.
//!
//! Everything is computed on ranks, so a learning rate spanning four
//! decades, an outlier run or a metric on any scale weighs the same:
//!
//! - a **numeric** parameter gets Spearman's ρ — the Pearson correlation of
//!   the parameter's ranks with the metric's ranks, ties given their average
//!   rank — in −1..1: +1 when the metric rises whenever the parameter does;
//! - a **categorical** one (strings, booleans, lists, or a mix) gets the
//!   rank correlation ratio η = √(SS_between / SS_total) of the metric's
//!   ranks grouped by category, in 0..1. η² is the Kruskal–Wallis H
//!   divided by n − 1 (H with its tie correction is exactly
//!   (n − 1)·SS_between/SS_total on average ranks), and for a numeric
//!   parameter ρ² is the share of the same rank variance a monotone trend
//!   explains — so |ρ| and η sort on one scale of strength.
//!
//! Nothing is reported (rather than NaN) when a parameter takes one value
//! in every run, when the metric does, when fewer than two runs have both,
//! or when every run has a category of its own (η would be 1 by
//! construction). Runs missing the parameter are skipped; how many runs a
//! figure rests on is always given, with a note under [`FEW_RUNS`].

use std::collections::HashMap;

use serde_json::Value;

use super::config::text;

/// Below this many runs a relation is shown with a note: with 4 runs, a
/// |ρ| of 1 happens by chance one time in 12.
pub const FEW_RUNS: usize = 5;

/// 1-based ranks of `values` (finite), ties sharing their average rank.
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        // Positions i..=j (0-based) share the mean of ranks i+1..=j+1.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            out[k] = rank;
        }
        i = j + 1;
    }
    out
}

/// Pearson's correlation; `None` when either side has no variance.
fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx).powi(2);
        syy += (b - my).powi(2);
    }
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx * syy).sqrt()).clamp(-1.0, 1.0))
}

/// Spearman's ρ of paired finite values; `None` for fewer than two pairs or
/// a side that is constant.
pub fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    assert_eq!(x.len(), y.len());
    if x.len() < 2 {
        return None;
    }
    pearson(&ranks(x), &ranks(y))
}

/// The rank correlation ratio η of `y` grouped by `group` (an index per
/// value) and the Kruskal–Wallis H (tie-corrected); `None` when `y` is
/// constant or there are fewer than two values.
pub fn rank_eta(group: &[usize], y: &[f64]) -> Option<(f64, f64)> {
    assert_eq!(group.len(), y.len());
    let n = y.len();
    if n < 2 {
        return None;
    }
    let r = ranks(y);
    let mean = (n as f64 + 1.0) / 2.0;
    let total: f64 = r.iter().map(|v| (v - mean).powi(2)).sum();
    if total <= 0.0 {
        return None;
    }
    let mut sums: HashMap<usize, (f64, f64)> = HashMap::new();
    for (g, v) in group.iter().zip(&r) {
        let e = sums.entry(*g).or_default();
        e.0 += v;
        e.1 += 1.0;
    }
    let between: f64 = sums.values().map(|(s, k)| k * (s / k - mean).powi(2)).sum();
    let share = (between / total).clamp(0.0, 1.0);
    Some((share.sqrt(), (n as f64 - 1.0) * share))
}

/// The median of finite values (not empty).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let m = values.len() / 2;
    if values.len() % 2 == 1 {
        values[m]
    } else {
        (values[m - 1] + values[m]) / 2.0
    }
}

/// One category of a categorical parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    /// Runs with this value.
    pub n: usize,
    /// Their median metric.
    pub median: f64,
}

/// What was found for one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum Measure {
    Spearman {
        rho: f64,
    },
    Categories {
        eta: f64,
        /// Kruskal–Wallis H, on k − 1 degrees of freedom.
        h: f64,
        /// Best median first.
        groups: Vec<Group>,
    },
    /// Why nothing is reported.
    None(&'static str),
}

/// One parameter against the metric.
#[derive(Debug, Clone, PartialEq)]
pub struct Relation {
    pub param: String,
    /// Whether every value is a number.
    pub numeric: bool,
    /// Runs with both the parameter and the metric.
    pub n: usize,
    pub measure: Measure,
}

impl Relation {
    /// |ρ| or η, 0..=1; `None` when nothing is reported.
    pub fn strength(&self) -> Option<f64> {
        match &self.measure {
            Measure::Spearman { rho } => Some(rho.abs()),
            Measure::Categories { eta, .. } => Some(*eta),
            Measure::None(_) => None,
        }
    }

    /// Whether the figure rests on fewer than [`FEW_RUNS`] runs.
    pub fn few(&self) -> bool {
        self.n < FEW_RUNS
    }
}

/// How `param` relates to the metric over `pairs` (a run's value of the
/// parameter, its metric value — finite); `lower_is_better` orders the
/// categories best first.
pub fn relate(param: &str, pairs: &[(&Value, f64)], lower_is_better: bool) -> Relation {
    let n = pairs.len();
    let numeric = n > 0 && pairs.iter().all(|(v, _)| v.is_number());
    let y: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let relation = |measure| Relation {
        param: param.to_string(),
        numeric,
        n,
        measure,
    };
    if n < 2 {
        return relation(Measure::None("fewer than two runs set it"));
    }
    let constant_metric = y.iter().all(|v| *v == y[0]);
    if numeric {
        let x: Vec<f64> = pairs
            .iter()
            .map(|(v, _)| v.as_f64().unwrap_or(0.0))
            .collect();
        if x.iter().all(|v| *v == x[0]) {
            return relation(Measure::None("the same in every run"));
        }
        if constant_metric {
            return relation(Measure::None("the metric is the same in every run"));
        }
        return relation(match spearman(&x, &y) {
            Some(rho) => Measure::Spearman { rho },
            None => Measure::None("no variation"),
        });
    }
    let labels: Vec<String> = pairs.iter().map(|(v, _)| text(v)).collect();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut names: Vec<&str> = Vec::new();
    let group: Vec<usize> = labels
        .iter()
        .map(|l| {
            *index.entry(l.as_str()).or_insert_with(|| {
                names.push(l.as_str());
                names.len() - 1
            })
        })
        .collect();
    if names.len() == 1 {
        return relation(Measure::None("the same in every run"));
    }
    if names.len() == n {
        return relation(Measure::None("every run has a value of its own"));
    }
    if constant_metric {
        return relation(Measure::None("the metric is the same in every run"));
    }
    let mut groups: Vec<Group> = names
        .iter()
        .enumerate()
        .map(|(g, label)| {
            let mut vals: Vec<f64> = group
                .iter()
                .zip(&y)
                .filter(|(k, _)| **k == g)
                .map(|(_, v)| *v)
                .collect();
            Group {
                label: label.to_string(),
                n: vals.len(),
                median: median(&mut vals),
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        let o = a.median.total_cmp(&b.median);
        if lower_is_better { o } else { o.reverse() }
    });
    relation(match rank_eta(&group, &y) {
        Some((eta, h)) => Measure::Categories { eta, h, groups },
        None => Measure::None("no variation"),
    })
}

/// Every parameter of `runs` (flattened configs with the run's metric,
/// finite) against the metric: strongest first, those with nothing to
/// report last (in first-seen order).
pub fn relate_all(runs: &[(Vec<(String, Value)>, f64)], lower_is_better: bool) -> Vec<Relation> {
    let mut order: Vec<&str> = Vec::new();
    let mut pairs: HashMap<&str, Vec<(&Value, f64)>> = HashMap::new();
    for (config, metric) in runs {
        for (k, v) in config {
            let list = pairs.entry(k.as_str()).or_insert_with(|| {
                order.push(k.as_str());
                Vec::new()
            });
            list.push((v, *metric));
        }
    }
    let mut out: Vec<Relation> = order
        .iter()
        .map(|k| relate(k, &pairs[k], lower_is_better))
        .collect();
    // Stable: equal strengths and the unreported keep the config's order.
    out.sort_by(|a, b| match (a.strength(), b.strength()) {
        (Some(x), Some(y)) => y.total_cmp(&x),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn ties_share_their_average_rank() {
        assert_eq!(ranks(&[10.0, 20.0, 20.0, 5.0]), [2.0, 3.5, 3.5, 1.0]);
        assert_eq!(ranks(&[1.0, 1.0, 1.0]), [2.0, 2.0, 2.0]);
        assert!(ranks(&[]).is_empty());
    }

    #[test]
    fn a_perfect_monotone_relation_is_one_whatever_its_shape() {
        let lr = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1];
        let loss: Vec<f64> = lr.iter().map(|v: &f64| v.powf(0.3) * 7.0).collect();
        assert!(close(spearman(&lr, &loss).unwrap(), 1.0));
        let falling: Vec<f64> = lr.iter().map(|v| 1.0 / v).collect();
        assert!(close(spearman(&lr, &falling).unwrap(), -1.0));
        // A curve that is monotone but far from a line: still ±1.
        let exp: Vec<f64> = [1.0, 2.0, 3.0, 4.0]
            .iter()
            .map(|v: &f64| v.powi(8))
            .collect();
        assert!(close(spearman(&[1.0, 2.0, 3.0, 4.0], &exp).unwrap(), 1.0));
    }

    #[test]
    fn ties_and_constants() {
        // Textbook example with a tie in x: ρ on average ranks.
        let rho = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]).unwrap();
        assert!(close(rho, 0.9486832980505138), "{rho}");
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        assert_eq!(spearman(&[1.0, 2.0], &[5.0, 5.0]), None);
        assert_eq!(spearman(&[1.0], &[5.0]), None);
    }

    #[test]
    fn kruskal_wallis_h_and_eta() {
        // Two groups fully separated: η = √(SSB/SST) of ranks 1..=6.
        let (eta, h) = rank_eta(&[0, 0, 0, 1, 1, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]).unwrap();
        // SST = 17.5, SSB = 3·(2−3.5)² + 3·(5−3.5)² = 13.5.
        assert!(close(eta, (13.5f64 / 17.5).sqrt()));
        assert!(
            close(h, 5.0 * 13.5 / 17.5),
            "H = 3.857…, as in the textbook"
        );
        // Interleaved groups: no effect.
        let (eta, _) = rank_eta(&[0, 1, 0, 1], &[1.0, 1.0, 2.0, 2.0]).unwrap();
        assert!(close(eta, 0.0));
        assert_eq!(rank_eta(&[0, 1], &[3.0, 3.0]), None);
    }

    #[test]
    fn parameters_are_related_skipping_missing_values() {
        // Lower lr, lower loss; batch size irrelevant; adam better than sgd;
        // epochs constant; seed only in two runs; name unique per run.
        let runs: Vec<(Vec<(String, Value)>, f64)> = [
            (json!({"lr": 1e-4, "batch": 32, "opt": "adam", "epochs": 5, "name": "a"}), 0.2),
            (json!({"lr": 3e-4, "batch": 64, "opt": "adam", "epochs": 5, "name": "b"}), 0.3),
            (json!({"lr": 1e-3, "batch": 32, "opt": "sgd", "epochs": 5, "name": "c"}), 0.5),
            (json!({"lr": 3e-3, "batch": 64, "opt": "sgd", "epochs": 5, "name": "d", "seed": 1}), 0.6),
            (json!({"lr": 1e-2, "batch": 32, "opt": "sgd", "epochs": 5, "name": "e"}), 0.9),
            (json!({"lr": 3e-2, "batch": 64, "opt": "adam", "epochs": 5, "name": "f", "seed": 2}), 1.4),
        ]
        .into_iter()
        .map(|(c, m)| (crate::compare::config::flatten(&c), m))
        .collect();
        let rel = relate_all(&runs, true);
        let by = |p: &str| rel.iter().find(|r| r.param == p).unwrap();
        assert_eq!(rel[0].param, "lr", "the strongest first");
        assert_eq!(by("lr").measure, Measure::Spearman { rho: 1.0 });
        assert!(by("lr").numeric && by("lr").n == 6 && !by("lr").few());
        let Measure::Spearman { rho } = by("batch").measure else {
            panic!()
        };
        assert!(rho.abs() < 0.5, "{rho}");
        let Measure::Categories { eta, groups, .. } = &by("opt").measure else {
            panic!()
        };
        assert!(*eta > 0.0 && *eta < 1.0);
        assert_eq!(groups[0].label, "adam", "best median first");
        assert_eq!((groups[0].n, groups[0].median), (3, 0.3));
        assert_eq!(by("epochs").measure, Measure::None("the same in every run"));
        assert_eq!(by("epochs").strength(), None);
        assert_eq!(
            by("name").measure,
            Measure::None("every run has a value of its own")
        );
        let seed = by("seed");
        assert_eq!(seed.n, 2, "runs without a seed are skipped");
        assert!(seed.few());
        // The unreported last.
        let reported = rel.iter().take_while(|r| r.strength().is_some()).count();
        assert!(rel[reported..].iter().all(|r| r.strength().is_none()));
        // Higher is better (accuracy): the best median first is the highest.
        let rel = relate_all(&runs, false);
        let Measure::Categories { groups, .. } =
            &rel.iter().find(|r| r.param == "opt").unwrap().measure
        else {
            panic!()
        };
        assert_eq!(groups[0].label, "sgd");
    }

    #[test]
    fn mixed_and_boolean_parameters_are_categorical() {
        let t = json!(true);
        let f = json!(false);
        let pairs = [(&t, 0.1), (&t, 0.2), (&f, 0.8), (&f, 0.9)];
        let r = relate("aug", &pairs, true);
        assert!(!r.numeric);
        let Measure::Categories { eta, .. } = r.measure else {
            panic!()
        };
        assert!(eta > 0.8);
        let (one, word) = (json!(1), json!("auto"));
        assert!(!relate("x", &[(&one, 1.0), (&word, 2.0), (&one, 3.0)], true).numeric);
        let metric_flat = relate("x", &[(&one, 1.0), (&word, 1.0), (&one, 1.0)], true);
        assert_eq!(
            metric_flat.measure,
            Measure::None("the metric is the same in every run")
        );
        assert_eq!(
            relate("x", &[], true).measure,
            Measure::None("fewer than two runs set it")
        );
    }
}
