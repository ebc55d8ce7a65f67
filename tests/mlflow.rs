//! The MLflow tracking API: the real `mlflow` client against a live server
//! (with `$PYTHON`), and the HTTP contract on both backends.

mod common;

use std::process::Command;

use axum::Router;
use common::{LiveServer, TestDb, get, post_json, send};
use serde_json::{Value, json};

const API: &str = "/api/2.0/mlflow";

async fn call(app: &Router, path: &str, body: Value) -> (u16, Value) {
    let (status, body) = send(app, post_json(&format!("{API}/{path}"), &body)).await;
    (status.as_u16(), body)
}

async fn ok(app: &Router, path: &str, body: Value) -> Value {
    let (status, out) = call(app, path, body.clone()).await;
    assert_eq!(status, 200, "{path} {body}: {out}");
    out
}

/// A new run in a new experiment; its MLflow run id.
async fn new_run(app: &Router, experiment: &str) -> String {
    let e = ok(app, "experiments/create", json!({ "name": experiment })).await;
    let r = ok(
        app,
        "runs/create",
        json!({ "experiment_id": e["experiment_id"], "start_time": 1_700_000_000_000i64, "run_name": "r" }),
    )
    .await;
    r["run"]["info"]["run_id"].as_str().unwrap().to_string()
}

async fn history(app: &Router, run: &str, key: &str) -> Vec<(Value, i64, i64)> {
    let (status, h) = send(
        app,
        get(&format!(
            "{API}/metrics/get-history?run_id={run}&metric_key={key}"
        )),
    )
    .await;
    assert_eq!(status, 200, "{h}");
    h["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["value"].clone(),
                m["timestamp"].as_i64().unwrap(),
                m["step"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// The trainlens id of an MLflow run.
async fn trainlens_id(db: &TestDb, mlflow_id: &str) -> uuid::Uuid {
    db.store.mlflow_run(mlflow_id).await.unwrap().unwrap().id
}

async fn trainlens_steps(app: &Router, id: uuid::Uuid, key: &str) -> Vec<u64> {
    let (status, cols) = send(app, get(&format!("/api/v1/runs/{id}/scalars?key={key}"))).await;
    assert_eq!(status, 200, "{cols}");
    common::steps_of(&cols)
}

on_both_backends! {
    async fn stepless_metrics_keep_every_value_and_retries_replace(db: &TestDb) {
        let app = db.app();
        let run = new_run(&app, "stepless").await;
        for (ts, v) in [(1000, 0.5), (2000, 0.4), (3000, 0.3)] {
            ok(&app, "runs/log-metric", json!({ "run_id": run, "key": "loss", "value": v, "timestamp": ts, "step": 0 })).await;
        }
        // The client retries the second one (same key, step, timestamp, value).
        ok(&app, "runs/log-metric", json!({ "run_id": run, "key": "loss", "value": 0.4, "timestamp": 2000, "step": 0 })).await;
        // Two in one batch, one in the same millisecond as the last.
        ok(&app, "runs/log-batch", json!({ "run_id": run, "metrics": [
            { "key": "loss", "value": 0.2, "timestamp": 3000, "step": 0 },
            { "key": "loss", "value": 0.1, "timestamp": 4000 },
        ]})).await;
        let h = history(&app, &run, "loss").await;
        assert_eq!(h, vec![
            (json!(0.5), 1000, 0), (json!(0.4), 2000, 0), (json!(0.2), 3000, 0),
            (json!(0.3), 3000, 0), (json!(0.1), 4000, 0),
        ]);
        // trainlens sees one point per arrival, at steps 0, 1, 2, …
        let id = trainlens_id(db, &run).await;
        assert_eq!(trainlens_steps(&app, id, "loss").await, [0, 1, 2, 3, 4]);
        // The latest value is the last by (step, timestamp, value).
        let r = ok(&app, "runs/get", json!({ "run_id": run })).await;
        assert_eq!(r["run"]["data"]["metrics"][0]["value"], json!(0.1));
    }

    async fn explicit_steps_stay_put_and_a_repeated_step_replaces(db: &TestDb) {
        let app = db.app();
        let run = new_run(&app, "steps").await;
        let metrics: Vec<Value> = (0..5)
            .map(|s| json!({ "key": "acc", "value": s as f64 / 10.0, "timestamp": 1000 + s, "step": s }))
            .collect();
        ok(&app, "runs/log-batch", json!({ "run_id": run, "metrics": metrics })).await;
        ok(&app, "runs/log-metric", json!({ "run_id": run, "key": "acc", "value": 0.9, "timestamp": 9000, "step": 3 })).await;
        let id = trainlens_id(db, &run).await;
        assert_eq!(trainlens_steps(&app, id, "acc").await, [0, 1, 2, 3, 4]);
        let h = history(&app, &run, "acc").await;
        assert_eq!(h.len(), 5);
        assert_eq!(h[4], (json!(0.9), 9000, 3), "ordered by timestamp");
        // A second value at step 0 goes past the last step; a later step 5
        // then finds step 5 taken by it and goes on to 6.
        ok(&app, "runs/log-metric", json!({ "run_id": run, "key": "acc", "value": 0.05, "timestamp": 9500, "step": 0 })).await;
        ok(&app, "runs/log-metric", json!({ "run_id": run, "key": "acc", "value": 0.95, "timestamp": 9600, "step": 5 })).await;
        assert_eq!(trainlens_steps(&app, id, "acc").await, [0, 1, 2, 3, 4, 5, 6]);
        let steps: Vec<i64> = history(&app, &run, "acc").await.iter().map(|m| m.2).collect();
        assert_eq!(steps, [0, 1, 2, 4, 3, 0, 5]);
    }

    async fn non_finite_values_go_and_come_back_as_mlflow_sends_them(db: &TestDb) {
        let app = db.app();
        let run = new_run(&app, "nan").await;
        ok(&app, "runs/log-batch", json!({ "run_id": run, "metrics": [
            { "key": "m", "value": "NaN", "timestamp": 1, "step": 0 },
            { "key": "m", "value": "Infinity", "timestamp": 2, "step": 1 },
            { "key": "m", "value": "-Infinity", "timestamp": 3, "step": 2 },
            { "key": "m", "value": 1.5, "timestamp": 4, "step": 3 },
        ]})).await;
        let values: Vec<Value> = history(&app, &run, "m").await.into_iter().map(|m| m.0).collect();
        assert_eq!(values, [json!("NaN"), json!("Infinity"), json!("-Infinity"), json!(1.5)]);
        // trainlens' own API says the same.
        let id = trainlens_id(db, &run).await;
        let (_, cols) = send(&app, get(&format!("/api/v1/runs/{id}/scalars?key=m"))).await;
        assert_eq!(cols["values"], json!(["NaN", "Infinity", "-Infinity", 1.5]));
    }

    async fn errors_are_mlflow_s_with_4xx_for_what_the_client_got_wrong(db: &TestDb) {
        let app = db.app();
        let run = new_run(&app, "errors").await;
        let many: Vec<Value> = (0..1001).map(|i| json!({ "key": "k", "value": 1, "timestamp": i, "step": i })).collect();
        let (status, e) = call(&app, "runs/log-batch", json!({ "run_id": run, "metrics": many })).await;
        assert_eq!(status, 400);
        assert_eq!(e["error_code"], "INVALID_PARAMETER_VALUE");
        assert!(e["message"].as_str().unwrap().starts_with("A batch logging request can contain at most 1000 metrics. Got 1001 metrics."), "{e}");
        let params: Vec<Value> = (0..101).map(|i| json!({ "key": format!("p{i}"), "value": "1" })).collect();
        let (status, e) = call(&app, "runs/log-batch", json!({ "run_id": run, "params": params })).await;
        assert_eq!((status, e["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")));
        let (status, e) = call(&app, "runs/log-parameter", json!({ "run_id": run, "key": "k".repeat(251), "value": "1" })).await;
        assert_eq!(status, 400);
        assert_eq!(e["message"], "'Param key' exceeds the maximum length of 250 characters");
        let (status, e) = call(&app, "runs/get", json!({ "run_id": "0123456789abcdef0123456789abcdef" })).await;
        assert_eq!((status, e["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")));
        let (status, e) = call(&app, "experiments/create", json!({ "name": "errors" })).await;
        assert_eq!((status, e["error_code"].as_str()), (400, Some("RESOURCE_ALREADY_EXISTS")));
        let (status, e) = call(&app, "experiments/get-by-name", json!({ "experiment_name": "nope" })).await;
        assert_eq!((status, e["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")));
        let (status, e) = send(&app, common::post(&format!("{API}/runs/log-batch"), "application/json", "{not json")).await;
        assert_eq!((status.as_u16(), e["error_code"].as_str()), (400, Some("BAD_REQUEST")));
        let (status, e) = call(&app, "runs/search", json!({ "experiment_ids": ["0"], "filter": "metrics.x ~ 1" })).await;
        assert_eq!((status, e["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")));
        let (status, e) = call(&app, "registered-models/search", json!({})).await;
        assert_eq!((status, e["error_code"].as_str()), (404, Some("ENDPOINT_NOT_FOUND")));
        // Artifacts: 501, which the client does not retry, saying why.
        let (status, e) = send(&app, common::post("/api/2.0/mlflow-artifacts/artifacts/0/x/artifacts/a.txt", "text/plain", "hi")).await;
        assert_eq!(status.as_u16(), 501);
        assert!(e["message"].as_str().unwrap().contains("not artifacts"), "{e}");
        // The /ajax-api alias answers the same.
        let (status, e) = send(&app, get(&format!("/ajax-api/2.0/mlflow/runs/get?run_id={run}"))).await;
        assert_eq!(status.as_u16(), 200, "{e}");
    }

    async fn runs_map_onto_trainlens_runs(db: &TestDb) {
        let app = db.app();
        // Experiment 0 is the project `default`.
        let e = ok(&app, "experiments/get", json!({ "experiment_id": "0" })).await;
        assert_eq!(e["experiment"]["name"], "default");
        let r = ok(&app, "runs/create", json!({ "tags": [{ "key": "mlflow.runName", "value": "tagged" }] })).await;
        let info = &r["run"]["info"];
        assert_eq!((info["experiment_id"].as_str(), info["status"].as_str(), info["run_name"].as_str()), (Some("0"), Some("RUNNING"), Some("tagged")));
        let run = info["run_id"].as_str().unwrap().to_string();
        ok(&app, "runs/log-batch", json!({ "run_id": run,
            "params": [{ "key": "lr", "value": "0.1" }, { "key": "opt", "value": "adam" }],
            "tags": [{ "key": "team", "value": "a" }] })).await;
        let id = trainlens_id(db, &run).await;
        let tl = db.store.get_run(id).await.unwrap().unwrap();
        assert_eq!(tl.project, "default");
        assert_eq!(tl.name, "tagged");
        assert_eq!(tl.config.unwrap().parse(), json!({ "lr": 0.1, "opt": "adam" }));
        assert_eq!(tl.run_key.as_deref(), Some(run.as_str()), "the MLflow id is the run_key");
        // trainlens' API with the same run_key reaches the same run.
        let (status, again) = send(&app, post_json("/api/v1/runs", &json!({ "project": "default", "run_key": run }))).await;
        assert_eq!(status.as_u16(), 200);
        assert_eq!(again["id"], json!(id.to_string()));
        // Statuses both ways.
        let u = ok(&app, "runs/update", json!({ "run_id": run, "status": "KILLED", "end_time": 1_700_000_100_000i64 })).await;
        assert_eq!(u["run_info"]["status"], "KILLED");
        assert_eq!(db.store.get_run(id).await.unwrap().unwrap().status.as_str(), "failed");
        ok(&app, "runs/update", json!({ "run_id": run, "status": "FINISHED" })).await;
        assert_eq!(db.store.get_run(id).await.unwrap().unwrap().status.as_str(), "finished");
        let (status, _) = call(&app, "runs/update", json!({ "run_id": run, "status": "DONE" })).await;
        assert_eq!(status, 400);
        // A run made through trainlens' API is an MLflow run too.
        let (_, v1) = send(&app, post_json("/api/v1/runs", &json!({ "project": "p", "name": "native" }))).await;
        let native = uuid::Uuid::parse_str(v1["id"].as_str().unwrap()).unwrap();
        let r = ok(&app, "runs/get", json!({ "run_id": native.simple().to_string() })).await;
        assert_eq!(r["run"]["info"]["run_name"], "native");
        // Tags: set, delete, delete again (404).
        ok(&app, "runs/delete-tag", json!({ "run_id": run, "key": "team" })).await;
        let (status, _) = call(&app, "runs/delete-tag", json!({ "run_id": run, "key": "team" })).await;
        assert_eq!(status, 404);
        // Deleted runs are refused writes and left out of searches.
        ok(&app, "runs/delete", json!({ "run_id": run })).await;
        let (status, _) = call(&app, "runs/log-metric", json!({ "run_id": run, "key": "m", "value": 1, "timestamp": 1 })).await;
        assert_eq!(status, 400);
        let s = ok(&app, "runs/search", json!({ "experiment_ids": ["0"] })).await;
        assert!(s["runs"].as_array().is_none_or(|r| r.is_empty()), "{s}");
        let s = ok(&app, "runs/search", json!({ "experiment_ids": ["0"], "run_view_type": "ALL" })).await;
        assert_eq!(s["runs"].as_array().unwrap().len(), 1);
    }

    async fn history_pages_and_bulk_intervals(db: &TestDb) {
        let app = db.app();
        let run = new_run(&app, "paged").await;
        let metrics: Vec<Value> = (0..1000).map(|s| json!({ "key": "loss", "value": s, "timestamp": 1000 + s, "step": s })).collect();
        ok(&app, "runs/log-batch", json!({ "run_id": run, "metrics": metrics })).await;
        let mut token: Option<String> = None;
        let mut seen = 0;
        loop {
            let mut q = format!("{API}/metrics/get-history?run_id={run}&metric_key=loss&max_results=300");
            if let Some(t) = &token {
                q.push_str(&format!("&page_token={}", urlencode(t)));
            }
            let (_, page) = send(&app, get(&q)).await;
            let m = page["metrics"].as_array().unwrap();
            assert_eq!(m[0]["step"], json!(seen));
            seen += m.len();
            match page["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, 1000);
        let (status, b) = send(&app, get(&format!(
            "{API}/metrics/get-history-bulk-interval?run_ids={run}&metric_key=loss&start_step=100&end_step=899&max_results=50"
        ))).await;
        assert_eq!(status.as_u16(), 200, "{b}");
        let m = b["metrics"].as_array().unwrap();
        assert_eq!(m.len(), 50);
        assert_eq!((m[0]["step"].as_i64(), m[49]["step"].as_i64()), (Some(100), Some(899)));
        assert_eq!(m[0]["run_id"], json!(run));
    }
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mlflow_client_logs_searches_and_gets_its_run_diagnosed() {
    assert!(
        std::env::var_os("PYTHON").is_some() || std::env::var_os("CI").is_none(),
        "CI must set PYTHON to a Python with mlflow"
    );
    let python = common::python();
    if !common::python_runs(&python, "import mlflow") {
        // mlflow-skinny is one of CI's optional packages
        // (.ci/python-optional.txt): when it did not install, this says so.
        eprintln!("`import mlflow` fails in {python}: skipping the MLflow client test");
        return;
    }
    let db = TestDb::sqlite().await;
    let server = LiveServer::serve(db.state()).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/mlflow_client.py");
    let home = tempfile::tempdir().unwrap();
    let mut client = Command::new(python);
    client
        .arg(script)
        .current_dir(home.path())
        .env("MLFLOW_TRACKING_URI", &server.base)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("HOME", home.path());
    let out = common::output_of(client).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = common::output_text(&out);
    assert!(
        out.status.success(),
        "the MLflow client script failed:\n{report}"
    );
    let result = common::result_line(&stdout, &report);
    eprintln!("the MLflow client script passed: {result}");

    let app = db.app();
    // The params are the config; the stepless values are steps 0..4.
    let parent = trainlens_id(&db, result["parent"].as_str().unwrap()).await;
    let run = db.store.get_run(parent).await.unwrap().unwrap();
    assert_eq!(run.project, "mlflow-client-test");
    assert_eq!(run.status.as_str(), "finished");
    assert_eq!(run.config.unwrap().parse()["lr"], json!(0.1));
    assert_eq!(
        trainlens_steps(&app, parent, "stepless").await,
        [0, 1, 2, 3, 4]
    );

    // Experiment tags set by the client are the project's.
    let tagged: i64 = result["tagged_experiment"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let e = db.store.mlflow_experiment(tagged).await.unwrap().unwrap();
    assert_eq!(e.name, "mlflow-client-tagged");
    let tags = db.store.mlflow_tags_of_experiment(&e).await.unwrap();
    assert_eq!(
        tags.iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [("dataset", "mnist"), ("stage", "prod"), ("team", "vision")]
    );

    // The Keras-named run is diagnosed as overfitting.
    let keras = trainlens_id(&db, result["keras"].as_str().unwrap()).await;
    common::eager_runner(&db.store, "http://trainlens.test")
        .tick()
        .await
        .unwrap();
    let (status, f) = send(&app, get(&format!("/api/v1/runs/{keras}/findings"))).await;
    assert_eq!(status.as_u16(), 200, "{f}");
    let kinds: Vec<&str> = f["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"overfitting"), "findings: {f}");

    server.stop().await;
    db.cleanup().await;
}
