//! A project's hyperparameter view, shaped: the runs that have the metric,
//! each parameter's relation to it (strongest first) and the parallel
//! coordinates of the strongest parameters. Pure; drawn by
//! `charts::parallel`.

use serde_json::Value;

use super::config::text;
use super::relation::{Measure, Relation, relate_all};
use crate::charts::parallel::{Axis, AxisKind, Coord, Parallel, Polyline, numeric_axis};

/// Parameter axes of the parallel coordinates at most: the strongest.
pub const MAX_AXES: usize = 8;

/// One run of the project.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneRun {
    pub label: String,
    /// Its config, flattened (see [`super::config::flatten`]).
    pub params: Vec<(String, Value)>,
    /// The metric, when the run has a finite one.
    pub metric: Option<f64>,
}

/// What the page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Tune {
    /// Runs with the metric (the others are left out and counted).
    pub used: usize,
    pub missing_metric: usize,
    /// Runs with the metric but an empty config.
    pub without_params: usize,
    /// Every parameter, strongest first, the unreported last.
    pub relations: Vec<Relation>,
    /// `None` without a run to draw.
    pub chart: Option<Parallel>,
}

/// The hyperparameter view of `runs` against the metric `metric_label`.
pub fn tune(title: &str, runs: &[TuneRun], metric_label: &str, lower_is_better: bool) -> Tune {
    let with: Vec<(&TuneRun, f64)> = runs
        .iter()
        .filter_map(|r| r.metric.filter(|m| m.is_finite()).map(|m| (r, m)))
        .collect();
    let pairs: Vec<(Vec<(String, Value)>, f64)> =
        with.iter().map(|(r, m)| (r.params.clone(), *m)).collect();
    let relations = relate_all(&pairs, lower_is_better);
    let axes_of: Vec<&Relation> = relations
        .iter()
        .filter(|r| r.strength().is_some())
        .take(MAX_AXES)
        .collect();
    let axes: Vec<Axis> = axes_of.iter().map(|rel| axis_of(rel, &with)).collect();
    let lines: Vec<Polyline> = with
        .iter()
        .map(|(run, metric)| Polyline {
            label: run.label.clone(),
            coords: axes
                .iter()
                .map(|axis| {
                    let v = run
                        .params
                        .iter()
                        .find(|(k, _)| *k == axis.label)
                        .map(|p| &p.1);
                    coord(axis, v)
                })
                .collect(),
            metric: *metric,
        })
        .collect();
    let names: Vec<String> = axes.iter().map(|a| a.label.clone()).collect();
    let chart = (!lines.is_empty()).then(|| Parallel {
        title: title.to_string(),
        desc: format!(
            "Parallel coordinates of {} runs: {}, then {metric_label}; a line per run, coloured by {metric_label} ({} is better)",
            lines.len(),
            if names.is_empty() {
                "no parameter varies with the metric".to_string()
            } else {
                format!("axes {}", names.join(", "))
            },
            if lower_is_better { "lower" } else { "higher" },
        ),
        axes,
        metric: numeric_axis(metric_label, with.iter().map(|w| w.1)),
        lines,
        lower_is_better,
    });
    Tune {
        used: with.len(),
        missing_metric: runs.len() - with.len(),
        without_params: with.iter().filter(|(r, _)| r.params.is_empty()).count(),
        relations,
        chart,
    }
}

/// The axis of one parameter over the runs with the metric: numeric for a
/// number parameter; otherwise a tick per value, best median on top.
fn axis_of(rel: &Relation, runs: &[(&TuneRun, f64)]) -> Axis {
    let values = || {
        runs.iter()
            .filter_map(|(r, _)| r.params.iter().find(|(k, _)| *k == rel.param))
            .map(|(_, v)| v)
    };
    if rel.numeric {
        return numeric_axis(&rel.param, values().filter_map(Value::as_f64));
    }
    let mut categories: Vec<String> = match &rel.measure {
        Measure::Categories { groups, .. } => groups.iter().map(|g| g.label.clone()).collect(),
        _ => Vec::new(),
    };
    for v in values() {
        let t = text(v);
        if !categories.contains(&t) {
            categories.push(t);
        }
    }
    Axis {
        label: rel.param.clone(),
        kind: AxisKind::Categorical { categories },
    }
}

fn coord(axis: &Axis, v: Option<&Value>) -> Coord {
    match (v, &axis.kind) {
        (Some(v), AxisKind::Numeric { .. }) => v.as_f64().map_or(Coord::Missing, Coord::Number),
        (Some(v), AxisKind::Categorical { categories }) => {
            let t = text(v);
            categories
                .iter()
                .position(|c| *c == t)
                .map_or(Coord::Missing, Coord::Category)
        }
        (None, _) => Coord::Missing,
    }
}

/// Below this |ρ| a parameter shows no monotone trend worth a word, below
/// [`CLEAR`] a weak one: Cohen's conventional "small" and "medium" effect
/// sizes for a correlation.
pub const NEGLIGIBLE: f64 = 0.1;
pub const CLEAR: f64 = 0.3;

/// How a relation reads in words, e.g. `higher lr, higher val/loss`,
/// `weakly: higher lr, lower val/loss`, `no monotone trend` or `adam best
/// (median 0.31)`; `None` when nothing is reported.
pub fn reading(rel: &Relation, metric_key: &str) -> Option<String> {
    match &rel.measure {
        Measure::Spearman { rho } if rho.abs() < NEGLIGIBLE => Some("no monotone trend".into()),
        Measure::Spearman { rho } => Some(format!(
            "{}higher {}, {} {metric_key}",
            if rho.abs() < CLEAR { "weakly: " } else { "" },
            rel.param,
            if *rho >= 0.0 { "higher" } else { "lower" }
        )),
        Measure::Categories { groups, .. } => groups.first().map(|g| {
            format!(
                "{} best (median {})",
                g.label,
                crate::charts::svg::readout(g.median)
            )
        }),
        Measure::None(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::config::flatten;
    use serde_json::json;

    fn run(label: &str, config: Value, metric: Option<f64>) -> TuneRun {
        TuneRun {
            label: label.into(),
            params: flatten(&config),
            metric,
        }
    }

    #[test]
    fn runs_without_the_metric_are_left_out_and_counted() {
        let runs = vec![
            run(
                "a",
                json!({"lr": 1e-4, "opt": "adam", "seed": 1}),
                Some(0.2),
            ),
            run("b", json!({"lr": 1e-3, "opt": "adam"}), Some(0.4)),
            run("c", json!({"lr": 1e-2, "opt": "sgd", "seed": 3}), Some(0.9)),
            run("d", json!({"lr": 3e-2, "opt": "sgd"}), Some(1.2)),
            run("e", json!({"lr": 1e-1, "opt": "sgd"}), None),
            run("f", json!({}), Some(0.5)),
        ];
        let t = tune("t", &runs, "lowest val/loss", true);
        assert_eq!((t.used, t.missing_metric, t.without_params), (5, 1, 1));
        assert_eq!(t.relations[0].param, "lr");
        assert_eq!(t.relations[0].n, 4, "run f has no lr");
        let chart = t.chart.unwrap();
        assert_eq!(chart.lines.len(), 5);
        let labels: Vec<&str> = chart.axes.iter().map(|a| a.label.as_str()).collect();
        assert!(
            labels.starts_with(&["lr"]) && labels.contains(&"opt"),
            "{labels:?}"
        );
        // The categorical axis puts the best category first (on top).
        let opt = chart.axes.iter().find(|a| a.label == "opt").unwrap();
        assert_eq!(
            opt.kind,
            AxisKind::Categorical {
                categories: vec!["adam".into(), "sgd".into()]
            }
        );
        assert!(matches!(
            chart.axes[0].kind,
            AxisKind::Numeric { log: true, .. }
        ));
        // Run f has no parameter: every coordinate is missing.
        let f = chart.lines.iter().find(|l| l.label == "f").unwrap();
        assert!(f.coords.iter().all(|c| *c == Coord::Missing));
        let a = chart.lines.iter().find(|l| l.label == "a").unwrap();
        let opt_at = chart.axes.iter().position(|a| a.label == "opt").unwrap();
        assert_eq!(a.coords[opt_at], Coord::Category(0));
        assert!(chart.desc.contains("5 runs") && chart.desc.contains("lower is better"));
    }

    #[test]
    fn at_most_max_axes_and_words_for_each_relation() {
        let runs: Vec<TuneRun> = (0..12)
            .map(|i| {
                let mut c = serde_json::Map::new();
                for p in 0..12 {
                    c.insert(format!("p{p}"), json!((i * (p + 1)) % 7));
                }
                c.insert("opt".into(), json!(if i % 2 == 0 { "adam" } else { "sgd" }));
                run(&format!("r{i}"), Value::Object(c), Some(i as f64))
            })
            .collect();
        let t = tune("t", &runs, "last acc", false);
        assert_eq!(t.chart.unwrap().axes.len(), MAX_AXES);
        let p0 = t.relations.iter().find(|r| r.param == "p0").unwrap();
        assert_eq!(reading(p0, "acc").unwrap(), "weakly: higher p0, higher acc");
        let opt = t.relations.iter().find(|r| r.param == "opt").unwrap();
        assert!(
            reading(opt, "acc").unwrap().starts_with("sgd best"),
            "odd runs score higher"
        );
        let rel = |rho| Relation {
            param: "lr".into(),
            numeric: true,
            n: 20,
            measure: Measure::Spearman { rho },
        };
        assert_eq!(reading(&rel(-0.05), "loss").unwrap(), "no monotone trend");
        assert_eq!(
            reading(&rel(-0.2), "loss").unwrap(),
            "weakly: higher lr, lower loss"
        );
        assert_eq!(
            reading(&rel(0.6), "loss").unwrap(),
            "higher lr, higher loss"
        );
        assert!(tune("t", &[], "m", true).chart.is_none());
        let none = tune("t", &[run("x", json!({"lr": 1}), None)], "m", true);
        assert_eq!((none.used, none.missing_metric), (0, 1));
        assert!(none.chart.is_none());
    }
}
