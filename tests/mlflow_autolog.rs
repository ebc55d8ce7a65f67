//! MLflow autologging into a live trainlens: `tests/python/mlflow_autolog.py`
//! trains tiny models on CPU, made faulty on purpose, through the MLflow
//! integrations of Hugging Face's `Trainer`, Lightning's `MLFlowLogger` and
//! Keras (plus a plain PyTorch loop logging without steps), with
//! `MLFLOW_TRACKING_URI` pointed at the server. For each framework this
//! checks what trainlens made of it: the run in its experiment's project,
//! the params in its config, the metric names the framework writes at the
//! steps it writes them, and the finding the fault must raise — found by
//! the server's own diagnosis runner.
//!
//! A framework that is not installed is skipped with a message (CI
//! installs them as optional packages); the plain PyTorch part needs only
//! torch and mlflow, and CI must run it.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Instant;

use axum::Router;
use common::{LiveServer, TestDb, get, send};
use serde_json::{Value, json};

const API: &str = "/api/2.0/mlflow";

/// What one framework's run must look like in trainlens.
struct Expect {
    framework: &'static str,
    project: &'static str,
    name: &'static str,
    /// Config entries the params must have become.
    config: Vec<(&'static str, Value)>,
    /// MLflow tags the run must have.
    tags: Vec<(&'static str, &'static str)>,
    /// Metric keys and the MLflow steps the framework writes them at.
    series: Vec<(&'static str, Steps)>,
    finding: &'static str,
}

/// The steps a framework writes a metric at.
enum Steps {
    /// Exactly these.
    Exactly(Vec<i64>),
    /// `n` points, all at step 0 (logged without a step): trainlens
    /// stores them at steps 0..n.
    Stepless(usize),
    /// `n` points at strictly increasing steps.
    Increasing(usize),
}

fn expectations() -> Vec<Expect> {
    vec![
        Expect {
            framework: "torch",
            project: "autolog-torch",
            name: "torch-diverges",
            config: vec![
                ("lr", json!(3.0)),
                ("optimizer", json!("sgd")),
                ("batch_size", json!(64)),
            ],
            tags: vec![("mlflow.runName", "torch-diverges")],
            series: vec![("loss", Steps::Stepless(40))],
            finding: "divergence",
        },
        Expect {
            framework: "hf",
            project: "autolog-hf",
            name: "hf-diverges",
            // TrainingArguments as HF's MLflowCallback logs them.
            config: vec![
                ("learning_rate", json!(0.5)),
                ("num_train_epochs", json!(3)),
                ("per_device_train_batch_size", json!(8)),
                ("optim", json!("sgd")),
            ],
            // MLFLOW_TAGS, which the callback sets.
            tags: vec![("suite", "autolog"), ("framework", "hf")],
            // 128 samples / batch 8 = 16 steps per epoch, 3 epochs: a log
            // every 2 steps, an evaluation every 8, the summary at the end.
            series: vec![
                ("loss", Steps::Exactly((2..=48).step_by(2).collect())),
                ("grad_norm", Steps::Exactly((2..=48).step_by(2).collect())),
                (
                    "learning_rate",
                    Steps::Exactly((2..=48).step_by(2).collect()),
                ),
                ("eval_loss", Steps::Exactly((8..=48).step_by(8).collect())),
                ("train_loss", Steps::Exactly(vec![48])),
            ],
            finding: "divergence",
        },
        Expect {
            framework: "lightning",
            project: "autolog-lightning",
            name: "lightning-overfits",
            config: vec![("lr", json!(0.02)), ("hidden", json!(128))],
            tags: vec![("mlflow.runName", "lightning-overfits")],
            // 32 samples / batch 16 = 2 steps per epoch, 16 epochs.
            series: vec![
                ("train_loss_step", Steps::Exactly((0..32).collect())),
                (
                    "train_loss_epoch",
                    Steps::Exactly((1..32).step_by(2).collect()),
                ),
                ("val_loss", Steps::Exactly((1..32).step_by(2).collect())),
                ("epoch", Steps::Increasing(32)),
            ],
            finding: "overfitting",
        },
        Expect {
            framework: "keras",
            project: "autolog-keras",
            name: "keras-diverges",
            // MlflowCallback logs the optimizer's config.
            config: vec![
                ("optimizer_learning_rate", json!(1000.0)),
                ("optimizer_name", json!("sgd")),
                // Python's None is null.
                ("optimizer_clipnorm", Value::Null),
            ],
            tags: vec![("mlflow.runName", "keras-diverges")],
            // 6 epochs: the callback logs `logs` per epoch and the
            // validation's `validation_*` without a step.
            series: vec![
                ("loss", Steps::Exactly((0..6).collect())),
                ("val_loss", Steps::Exactly((0..6).collect())),
                ("accuracy", Steps::Exactly((0..6).collect())),
                ("validation_loss", Steps::Stepless(6)),
            ],
            finding: "divergence",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn autologged_runs_land_and_get_diagnosed() {
    let in_ci = std::env::var_os("CI").is_some();
    assert!(
        std::env::var_os("PYTHON").is_some() || !in_ci,
        "CI must set PYTHON to a Python with torch"
    );
    let python = common::python();
    if !common::python_runs(&python, "import mlflow") {
        // mlflow-skinny is one of CI's optional packages.
        eprintln!("`import mlflow` fails in {python}: skipping MLflow autologging");
        return;
    }
    assert!(
        common::python_runs(&python, "import torch") || !in_ci,
        "CI's Python must have torch"
    );
    let db = TestDb::sqlite().await;
    let server = LiveServer::with_eager_runner(db.state()).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/mlflow_autolog.py"
    );
    let home = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&python);
    cmd.arg(script)
        .current_dir(home.path())
        .env("MLFLOW_TRACKING_URI", &server.base)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HOME", home.path())
        .env("KERAS_BACKEND", "torch")
        // Nothing from a hub, no telemetry, no other trackers.
        .env("HF_HUB_OFFLINE", "1")
        .env("DISABLE_TELEMETRY", "1")
        .env("DO_NOT_TRACK", "1")
        .env("MLFLOW_ENABLE_TELEMETRY", "false")
        .env("CUDA_VISIBLE_DEVICES", "");
    let started = Instant::now();
    let out = common::output_of(cmd).await;
    let script_secs = started.elapsed().as_secs_f64();
    let report = common::output_text(&out);
    assert!(out.status.success(), "the autolog script failed:\n{report}");
    let result = common::result_line(&String::from_utf8_lossy(&out.stdout), &report);
    eprintln!("the autolog script took {script_secs:.1} s: {result}");

    let app = db.state();
    let app = trainlens::app::router(app);
    let mut checked = Vec::new();
    for e in expectations() {
        let r = &result[e.framework];
        if let Some(why) = r["skipped"].as_str() {
            assert!(
                e.framework != "torch" || !in_ci,
                "CI must run the plain PyTorch part: {why}"
            );
            eprintln!("{}: skipped ({why})", e.framework);
            continue;
        }
        check(&app, &db, &e, r).await;
        checked.push(e.framework);
    }
    assert!(
        checked.contains(&"torch") || !in_ci,
        "nothing checked in CI"
    );
    eprintln!("checked {checked:?}");
    server.stop().await;
    db.cleanup().await;
}

async fn check(app: &Router, db: &TestDb, e: &Expect, r: &Value) {
    let fw = e.framework;
    let mlflow_id = r["run_id"].as_str().unwrap_or_else(|| panic!("{fw}: {r}"));
    let id = db
        .store
        .mlflow_run(mlflow_id)
        .await
        .unwrap()
        .unwrap_or_else(|| panic!("{fw}: no run {mlflow_id}"))
        .id;
    let run = db.store.get_run(id).await.unwrap().unwrap();
    assert_eq!(
        (run.project.as_str(), run.name.as_str(), run.status.as_str()),
        (e.project, e.name, "finished"),
        "{fw}"
    );
    let (_, exp) = send(
        app,
        get(&format!(
            "{API}/experiments/get?experiment_id={}",
            r["experiment_id"].as_str().unwrap()
        )),
    )
    .await;
    assert_eq!(exp["experiment"]["name"], e.project, "{fw}: {exp}");

    let config = run.config.unwrap().parse();
    let config = config
        .as_object()
        .unwrap_or_else(|| panic!("{fw}: {config}"));
    for (k, v) in &e.config {
        assert_eq!(config.get(*k), Some(v), "{fw}: config {k} in {config:?}");
    }

    let data = db.store.mlflow_data(id).await.unwrap();
    for (k, v) in &e.tags {
        assert_eq!(
            data.tags.get(*k).map(String::as_str),
            Some(*v),
            "{fw}: tag {k} in {:?}",
            data.tags
        );
    }

    for (key, steps) in &e.series {
        let mlflow_steps = history_steps(app, mlflow_id, key).await;
        let (status, cols) = send(app, get(&format!("/api/v1/runs/{id}/scalars?key={key}"))).await;
        assert_eq!(status.as_u16(), 200, "{fw} {key}: {cols}");
        let tl_steps: Vec<i64> = common::steps_of(&cols).iter().map(|&s| s as i64).collect();
        match steps {
            Steps::Exactly(want) => {
                assert_eq!(&mlflow_steps, want, "{fw} {key}: MLflow's steps");
                assert_eq!(&tl_steps, want, "{fw} {key}: trainlens' steps");
            }
            Steps::Stepless(n) => {
                assert_eq!(mlflow_steps, vec![0; *n], "{fw} {key}: MLflow's steps");
                let want: Vec<i64> = (0..*n as i64).collect();
                assert_eq!(tl_steps, want, "{fw} {key}: one trainlens step per value");
            }
            Steps::Increasing(n) => {
                assert_eq!(mlflow_steps.len(), *n, "{fw} {key}: {mlflow_steps:?}");
                assert!(
                    mlflow_steps.windows(2).all(|w| w[0] < w[1]),
                    "{fw} {key}: {mlflow_steps:?}"
                );
                assert_eq!(tl_steps, mlflow_steps, "{fw} {key}");
            }
        }
    }

    // The server's runner diagnoses the run once its data has settled.
    let mut last = Value::Null;
    let found = common::eventually(60.0, async || {
        let (_, f) = send(app, get(&format!("/api/v1/runs/{id}/findings"))).await;
        let hit = f["findings"]
            .as_array()
            .is_some_and(|all| all.iter().any(|x| x["kind"] == e.finding));
        last = f;
        hit
    })
    .await;
    let kinds: BTreeMap<String, String> = last["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["kind"].as_str().unwrap_or_default().to_string(),
                f["severity"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(found, "{fw}: no {} finding: {last}", e.finding);

    // Keras autolog (when `mlflow.keras` imports: with pandas) logs the
    // fit's arguments too, and a logged model made before training whose
    // upload trainlens refused.
    if r["how"] == "autolog" {
        assert_eq!(config.get("epochs"), Some(&json!(6)), "{fw}: {config:?}");
        let model_id = r["model_id"].as_str().unwrap();
        let m = db
            .store
            .mlflow_logged_model(model_id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.source_run_id.as_deref(), Some(mlflow_id));
        assert_eq!(m.status, "LOGGED_MODEL_UPLOAD_FAILED");
        assert_eq!(
            r["model_status"], "FAILED",
            "the client sees it failed: {r}"
        );
    }
    eprintln!(
        "{fw}: {} landed ({} s in the script), findings {kinds:?}",
        e.name, r["seconds"]
    );
}

/// The steps of MLflow's `get-history` of a metric, in its order.
async fn history_steps(app: &Router, run: &str, key: &str) -> Vec<i64> {
    let (status, h) = send(
        app,
        get(&format!(
            "{API}/metrics/get-history?run_id={run}&metric_key={key}"
        )),
    )
    .await;
    assert_eq!(status.as_u16(), 200, "{key}: {h}");
    h["metrics"]
        .as_array()
        .unwrap_or_else(|| panic!("{run} has no metric {key}: {h}"))
        .iter()
        .map(|m| m["step"].as_i64().unwrap())
        .collect()
}
