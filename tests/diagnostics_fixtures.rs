//! Runs the detectors over the recorded training runs in
//! `shared/fixtures/training-runs` and checks them against `labels.json`:
//! every `expect` kind must be raised (warning or worse) and nothing outside
//! `expect ∪ allow` may be. Also checks robustness to runs in progress
//! (truncated runs) and to other tools' metric names.
//!
//! `cargo test --test diagnostics_fixtures -- --nocapture` prints the per-run
//! table; the `predictions.json` for `shared/tools/score.py` is written to
//! `$PREDICTIONS_OUT` or, by default, to the test's temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use trainlens::diagnostics::names::{Role, classify};
use trainlens::diagnostics::{Diagnosis, RunView, diagnose};
use trainlens::record::Record;

mod common;

/// The recorded runs (see `common::fixtures_dir`).
fn fixtures() -> String {
    common::fixtures_dir().to_string_lossy().into_owned()
}

struct Label {
    expect: BTreeSet<String>,
    allow: BTreeSet<String>,
}

fn labels() -> BTreeMap<String, Label> {
    labels_in(&fixtures())
}

fn labels_in(dir: &str) -> BTreeMap<String, Label> {
    let text = std::fs::read_to_string(Path::new(dir).join("labels.json")).expect("labels.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("labels.json is JSON");
    let set = |v: &serde_json::Value| {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect()
    };
    json.as_object()
        .expect("labels.json is an object")
        .iter()
        .map(|(run, l)| {
            (
                run.clone(),
                Label {
                    expect: set(&l["expect"]),
                    allow: set(&l["allow"]),
                },
            )
        })
        .collect()
}

fn runs() -> Vec<(String, Vec<Record>)> {
    runs_in(&fixtures())
}

/// The dev fixtures, each with its label (every one must have one).
fn labelled_runs() -> Vec<(String, Label, Vec<Record>)> {
    let mut labels = labels();
    runs()
        .into_iter()
        .map(|(name, records)| {
            let label = labels
                .remove(&name)
                .unwrap_or_else(|| panic!("{name} not in labels.json"));
            (name, label, records)
        })
        .collect()
}

fn runs_in(dir: &str) -> Vec<(String, Vec<Record>)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("fixtures directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {dir}");
    paths
        .into_iter()
        .map(|p| {
            let name = p
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            let text = std::fs::read_to_string(&p).expect("fixture readable");
            let records = text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .enumerate()
                .map(|(i, l)| {
                    serde_json::from_str::<Record>(l)
                        .unwrap_or_else(|e| panic!("{name}:{}: {e}", i + 1))
                })
                .collect();
            (name, records)
        })
        .collect()
}

fn raised(d: &Diagnosis) -> BTreeSet<String> {
    d.raised().map(|f| f.kind.as_str().to_string()).collect()
}

fn join(s: &BTreeSet<String>) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.iter().cloned().collect::<Vec<_>>().join(",")
    }
}

/// Problems (missed expected kinds, false alarms) of one verdict.
fn check(label: &Label, got: &BTreeSet<String>) -> (BTreeSet<String>, BTreeSet<String>) {
    let missing = label.expect.difference(got).cloned().collect();
    let false_alarms = got
        .iter()
        .filter(|k| !label.expect.contains(*k) && !label.allow.contains(*k))
        .cloned()
        .collect();
    (missing, false_alarms)
}

/// Writes each run's raised kinds as JSON to `$PREDICTIONS_OUT`, else to
/// `file_name` in the test's temporary directory.
fn write_predictions(predictions: &BTreeMap<String, Vec<String>>, file_name: &str) {
    let out = std::env::var_os("PREDICTIONS_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join(file_name));
    std::fs::write(
        &out,
        serde_json::to_string_pretty(predictions).expect("serialisable"),
    )
    .expect("write predictions");
    println!("predictions written to {}", out.display());
}

#[test]
fn fixtures_match_labels() {
    let mut failures = Vec::new();
    let mut predictions = BTreeMap::new();
    println!(
        "{:<28} {:<26} {:<48} {:<20} false alarms",
        "run", "expected", "raised", "missing"
    );
    for (name, label, records) in labelled_runs() {
        let d = diagnose(&RunView::from_records(records));
        let got = raised(&d);
        let (missing, false_alarms) = check(&label, &got);
        println!(
            "{:<28} {:<26} {:<48} {:<20} {}",
            name,
            join(&label.expect),
            join(&got),
            join(&missing),
            join(&false_alarms)
        );
        if !missing.is_empty() || !false_alarms.is_empty() {
            failures.push(format!(
                "{name}: missing {missing:?}, false alarms {false_alarms:?}\n{d:#?}"
            ));
        }
        predictions.insert(name, got.into_iter().collect::<Vec<_>>());
    }
    write_predictions(&predictions, "predictions.json");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The records up to `fraction` of the run's last step, without the `end`
/// record: the run as it looked while in progress.
fn truncate(records: &[Record], fraction: f64) -> Vec<Record> {
    let last = records
        .iter()
        .filter_map(|r| match r {
            Record::Scalar(s) => Some(s.step),
            Record::Histogram(h) => Some(h.step),
            _ => None,
        })
        .max()
        .unwrap_or(0);
    let cut = (last as f64 * fraction) as u64;
    kept(records, |r| match r {
        Record::Scalar(s) => s.step <= cut,
        Record::Histogram(h) => h.step <= cut,
        Record::End(_) => false,
        _ => true,
    })
}

#[test]
fn runs_in_progress_raise_no_false_alarms() {
    let mut failures = Vec::new();
    for (name, label, records) in labelled_runs() {
        for fraction in [0.1, 0.3, 0.6] {
            let d = diagnose(&RunView::from_records(truncate(&records, fraction)));
            let got = raised(&d);
            let (_, false_alarms) = check(&label, &got);
            let healthy = label.expect.is_empty();
            if healthy || fraction == 0.3 {
                println!(
                    "{name:<28} {:>3.0}%  raised {:<40} notes: {}",
                    fraction * 100.0,
                    join(&got),
                    d.notes.join(" | ")
                );
            }
            if !false_alarms.is_empty() {
                failures.push(format!(
                    "{name} at {:.0}%: false alarms {false_alarms:?}",
                    fraction * 100.0
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn healthy_runs_early_on_say_not_enough_data() {
    let labels = labels();
    for (name, records) in runs()
        .into_iter()
        .filter(|(n, _)| labels[n].expect.is_empty())
    {
        let d = diagnose(&RunView::from_records(truncate(&records, 0.1)));
        assert!(
            d.notes.iter().any(|n| n.contains("not enough data")),
            "{name}: {:?}",
            d.notes
        );
    }
}

/// Renames the run-level metrics to another tool's names.
fn rename(records: &[Record], names: &[(Role, &str)]) -> Vec<Record> {
    records
        .iter()
        .cloned()
        .map(|mut r| {
            if let Record::Scalar(s) = &mut r
                && let Some(m) = classify(&s.key).filter(|m| m.layer.is_none())
                && let Some((_, new)) = names.iter().find(|(role, _)| *role == m.role)
            {
                s.key = (*new).to_string();
            }
            r
        })
        .collect()
}

/// The records that pass `keep`.
fn kept(records: &[Record], keep: impl Fn(&Record) -> bool) -> Vec<Record> {
    records.iter().filter(|r| keep(r)).cloned().collect()
}

/// A scalar record with no time.
fn scalar(step: u64, key: String, value: f64) -> Record {
    Record::Scalar(trainlens::record::ScalarRecord {
        step,
        key,
        value: trainlens::record::Value(value),
        time: None,
    })
}

/// The steps of the scalar records whose key passes `keep`.
fn scalar_steps(records: &[Record], keep: impl Fn(&str) -> bool) -> Vec<u64> {
    records
        .iter()
        .filter_map(|r| match r {
            Record::Scalar(s) if keep(&s.key) => Some(s.step),
            _ => None,
        })
        .collect()
}

/// Logs the epoch counter the way other tools do: with every training-loss
/// point, as a fraction (HF Trainer) or as the current 0-based epoch
/// (Lightning), instead of once at each epoch's end.
fn relog_epoch(records: &[Record], fractional: bool) -> Vec<Record> {
    let ends = scalar_steps(records, |key| key == "epoch");
    let mut out = kept(
        records,
        |r| !matches!(r, Record::Scalar(s) if s.key == "epoch"),
    );
    let steps = scalar_steps(records, |key| {
        classify(key).is_some_and(|m| m.role == Role::TrainLoss)
    });
    for step in steps {
        let e = ends
            .iter()
            .position(|end| step < *end)
            .unwrap_or(ends.len());
        let value = if fractional {
            let (lo, hi) = (
                if e == 0 { 0 } else { ends[e - 1] },
                ends.get(e).copied().unwrap_or(step + 1),
            );
            e as f64 + (step - lo) as f64 / (hi - lo).max(1) as f64
        } else {
            e as f64
        };
        out.push(scalar(step, "epoch".into(), value));
    }
    out
}

#[test]
fn other_tools_names_give_the_same_verdicts() {
    // Each tool's names for the train loss, val loss, train accuracy, val
    // accuracy and learning rate, and how it logs `epoch` (see relog_epoch:
    // fractional at every train-loss step, whole at every one, or as is).
    let roles = [
        Role::TrainLoss,
        Role::ValLoss,
        Role::TrainAcc,
        Role::ValAcc,
        Role::Lr,
    ];
    let tools = [
        (
            "keras",
            [
                "loss",
                "val_loss",
                "accuracy",
                "val_accuracy",
                "learning_rate",
            ],
            None,
        ),
        (
            "hf",
            [
                "loss",
                "eval_loss",
                "train_accuracy",
                "eval_accuracy",
                "learning_rate",
            ],
            Some(true),
        ),
        (
            "lightning",
            [
                "train_loss_step",
                "val_loss",
                "train_acc_epoch",
                "val_acc",
                "lr-Adam",
            ],
            Some(false),
        ),
        (
            "mlflow",
            [
                "training_loss",
                "validation_loss",
                "training_accuracy",
                "validation_accuracy",
                "lr",
            ],
            None,
        ),
    ];
    let mut failures = Vec::new();
    for (name, records) in runs() {
        let base = raised(&diagnose(&RunView::from_records(records.clone())));
        for (tool, keys, fractional_epoch) in tools {
            let names: Vec<(Role, &str)> = roles.into_iter().zip(keys).collect();
            let renamed = rename(&records, &names);
            let renamed = match fractional_epoch {
                Some(fractional) => relog_epoch(&renamed, fractional),
                None => renamed,
            };
            let got = raised(&diagnose(&RunView::from_records(renamed)));
            if got != base {
                failures.push(format!("{name} with {tool} names: {got:?} != {base:?}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn findings_are_specific() {
    for (name, records) in runs() {
        let d = diagnose(&RunView::from_records(records));
        for f in d.raised() {
            assert!(
                !f.title.is_empty() && !f.cause.is_empty() && !f.fixes.is_empty(),
                "{name}: {f:#?}"
            );
            assert!(!f.evidence.summary.is_empty(), "{name}: {f:#?}");
            // Findings survive a JSON round trip (non-finite evidence included).
            let json = serde_json::to_string(f).expect("serialise");
            let back: trainlens::diagnostics::Finding =
                serde_json::from_str(&json).expect("deserialise");
            assert_eq!(back.kind, f.kind);
        }
        if name == "dev-diverge-sgd-lr5" {
            let f = d
                .get(trainlens::diagnostics::Kind::Divergence)
                .expect("divergence");
            println!(
                "{}\n  {}\n  cause: {}\n  fixes: {:?}",
                f.title, f.evidence.summary, f.cause, f.fixes
            );
            assert!(
                f.fixes.iter().any(|x| x.contains("5 → 0.5")),
                "{:?}",
                f.fixes
            );
        }
    }
}

/// Keeps only the run-level curves (losses, accuracies, LR, epoch): no model
/// summary, no datasets, no per-layer signals, no histograms.
fn losses_only(records: &[Record]) -> Vec<Record> {
    kept(records, |r| match r {
        Record::Scalar(s) => {
            classify(&s.key).is_some_and(|m| m.layer.is_none() && m.role != Role::GradNorm)
        }
        Record::Model(_) | Record::Dataset(_) | Record::Histogram(_) => false,
        _ => true,
    })
}

#[test]
fn missing_signals_cause_no_false_alarms() {
    let mut failures = Vec::new();
    // Kinds a loss-only run can and should still show.
    let loss_based = [
        "divergence",
        "overfitting",
        "oscillating_loss",
        "slow_convergence",
        "underfitting",
    ];
    for (name, label, records) in labelled_runs() {
        let d = diagnose(&RunView::from_records(losses_only(&records)));
        let got = raised(&d);
        let (missing, false_alarms) = check(&label, &got);
        let lost: BTreeSet<_> = missing
            .iter()
            .filter(|k| loss_based.contains(&k.as_str()))
            .collect();
        println!(
            "{name:<28} losses only: raised {:<40} lost {}",
            join(&got),
            join(&missing)
        );
        let lost_loss_based = !lost.is_empty();
        let per_layer_kinds = [
            "exploding_gradients",
            "vanishing_gradients",
            "dead_relu",
            "saturated_activations",
            "unchanged_weights",
        ];
        if got.iter().any(|k| per_layer_kinds.contains(&k.as_str())) {
            failures.push(format!(
                "{name}: per-layer finding without per-layer signals: {got:?}"
            ));
        }
        if !false_alarms.is_empty() || lost_loss_based {
            failures.push(format!(
                "{name}: false alarms {false_alarms:?}, lost loss-based {lost:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// A large synthetic run: `series` series of `points` points each (one
/// train loss, one LR, the rest per-layer signals of `series / 7` layers),
/// with epoch-level evaluations every 100 steps.
fn large_run(series: usize, points: usize) -> RunView {
    use trainlens::diagnostics::Series;
    let noise = |i: usize| ((i.wrapping_mul(2654435761) % 1000) as f64 / 1000.0) - 0.5;
    let curve = |f: &dyn Fn(usize) -> f64| Series {
        steps: (0..points as u64).collect(),
        values: (0..points).map(f).collect(),
    };
    let mut v = RunView {
        name: "bench".into(),
        ..Default::default()
    };
    v.scalars.insert(
        "train/loss".into(),
        curve(&|i| 2.3 * (-(i as f64) / 20000.0).exp() * (1.0 + 0.3 * noise(i))),
    );
    v.scalars.insert("lr".into(), curve(&|_| 1e-3));
    let epochs = points / 100;
    let ep = |f: &dyn Fn(usize) -> f64| Series {
        steps: (1..=epochs as u64).map(|e| e * 100).collect(),
        values: (1..=epochs).map(f).collect(),
    };
    v.scalars.insert("epoch".into(), ep(&|e| e as f64));
    v.scalars.insert(
        "train/acc".into(),
        ep(&|e| 0.99 - 0.5 * (-(e as f64) / 200.0).exp()),
    );
    v.scalars.insert(
        "val/acc".into(),
        ep(&|e| 0.96 - 0.5 * (-(e as f64) / 200.0).exp()),
    );
    v.scalars.insert(
        "val/loss".into(),
        ep(&|e| 0.1 + 2.0 * (-(e as f64) / 200.0).exp()),
    );
    let signals = [
        "grad_norm",
        "weight_norm",
        "update_ratio",
        "act_mean",
        "act_std",
        "dead_frac",
        "sat_frac",
    ];
    let mut n = 2;
    'outer: for layer in 0.. {
        for s in signals {
            if n >= series {
                break 'outer;
            }
            v.scalars.insert(
                format!("{s}/fc{layer}"),
                curve(&|i| 0.3 + 0.01 * noise(i + layer)),
            );
            n += 1;
        }
    }
    v
}

/// `cargo test --release --test diagnostics_fixtures -- --ignored bench --nocapture`
#[test]
#[ignore = "timing; run in release"]
fn bench_large_run() {
    let healthy = large_run(200, 100_000);
    // Worst case: a stalled loss enables every gated rule.
    let mut stalled = healthy.clone();
    if let Some(l) = stalled.scalars.get_mut("train/loss") {
        l.values
            .iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = 2.3 + 0.01 * (i % 7) as f64);
    }
    for (what, v) in [("healthy", &healthy), ("stalled", &stalled)] {
        let points: usize = v.scalars.values().map(|s| s.values.len()).sum();
        diagnose(v); // warm up
        let runs = 10;
        let t = std::time::Instant::now();
        for _ in 0..runs {
            std::hint::black_box(diagnose(std::hint::black_box(v)));
        }
        let per = t.elapsed() / runs;
        println!(
            "diagnose ({what}): {} series, {points} points: {per:?} per run",
            v.scalars.len()
        );
    }
}

/// Diagnoses every run in `$DIAG_DIR` (default: the dev fixtures) against its
/// `labels.json` without asserting, prints the table and writes
/// `predictions.json` for score.py next to the runs' labels (to
/// `$PREDICTIONS_OUT`, default the test's temporary directory), and every
/// run's diagnosis (findings and notes) as JSON to `$FINDINGS_OUT` if set.
///
/// `DIAG_DIR=/path/to/runs cargo test --test diagnostics_fixtures -- --ignored score_directory --nocapture`
#[test]
#[ignore = "tool: needs DIAG_DIR"]
fn score_directory() {
    let dir = std::env::var("DIAG_DIR").unwrap_or_else(|_| fixtures());
    let labels = labels_in(&dir);
    let mut predictions = BTreeMap::new();
    let mut findings = BTreeMap::new();
    for (name, records) in runs_in(&dir) {
        let d = diagnose(&RunView::from_records(records));
        findings.insert(
            name.clone(),
            serde_json::to_value(&d).expect("serialisable"),
        );
        let got = raised(&d);
        let (missing, false_alarms) = match labels.get(&name) {
            Some(l) => check(l, &got),
            None => (BTreeSet::new(), BTreeSet::new()),
        };
        let all: Vec<String> = d
            .findings
            .iter()
            .map(|f| format!("{}:{}", f.kind, f.severity))
            .collect();
        println!(
            "{name:<28} raised {:<50} missing {:<24} false {:<24} | {}",
            join(&got),
            join(&missing),
            join(&false_alarms),
            all.join(" ")
        );
        predictions.insert(name, got.into_iter().collect::<Vec<_>>());
    }
    write_predictions(&predictions, "predictions-dir.json");
    // Every finding (with its onset, cause and fixes), for benchmarks that
    // check more than the raised kinds (bench/diagnosis).
    if let Some(out) = std::env::var_os("FINDINGS_OUT") {
        std::fs::write(
            &out,
            serde_json::to_string(&findings).expect("serialisable"),
        )
        .expect("write findings");
    }
}

/// Prints every finding and note of every run in `$DIAG_DIR` (default: the
/// dev fixtures), for reviewing the wording.
#[test]
#[ignore = "tool: prints findings"]
fn explain() {
    let dir = std::env::var("DIAG_DIR").unwrap_or_else(|_| fixtures());
    for (name, records) in runs_in(&dir) {
        let d = diagnose(&RunView::from_records(records));
        println!("== {name}");
        for f in &d.findings {
            println!("  [{}] {} — {}", f.severity, f.kind, f.title);
            println!("      evidence: {}", f.evidence.summary);
            println!("      cause: {}", f.cause);
            for x in &f.fixes {
                println!("      fix: {x}");
            }
        }
        for n in &d.notes {
            println!("  note: {n}");
        }
    }
}

/// Replaces the per-step training loss with one mean per epoch, as Keras'
/// `History` and many epoch loggers record it.
fn epoch_mean_losses(records: &[Record]) -> Vec<Record> {
    let is_train_loss = |k: &str| classify(k).is_some_and(|m| m.role == Role::TrainLoss);
    let epoch_ends = scalar_steps(records, |key| key == "epoch");
    let mut sums: BTreeMap<(String, u64), (f64, usize)> = BTreeMap::new();
    for r in records {
        if let Record::Scalar(s) = r
            && is_train_loss(&s.key)
        {
            let end = epoch_ends
                .iter()
                .copied()
                .find(|e| *e >= s.step)
                .unwrap_or(s.step);
            let e = sums.entry((s.key.clone(), end)).or_insert((0.0, 0));
            e.0 += s.value.0;
            e.1 += 1;
        }
    }
    let mut out = kept(
        records,
        |r| !matches!(r, Record::Scalar(s) if is_train_loss(&s.key)),
    );
    for ((key, step), (sum, n)) in sums {
        out.push(scalar(step, key, sum / n as f64));
    }
    out
}

#[test]
fn epoch_level_losses_give_no_false_alarms() {
    let mut failures = Vec::new();
    for (name, label, records) in labelled_runs() {
        let got = raised(&diagnose(&RunView::from_records(epoch_mean_losses(
            &records,
        ))));
        let (missing, false_alarms) = check(&label, &got);
        println!(
            "{name:<28} epoch-mean loss: raised {:<40} missing {}",
            join(&got),
            join(&missing)
        );
        if !false_alarms.is_empty() || !missing.is_empty() {
            failures.push(format!(
                "{name}: missing {missing:?}, false alarms {false_alarms:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
