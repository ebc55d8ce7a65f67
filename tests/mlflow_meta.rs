//! Experiment tags and logged models (`store::mlflow_meta`, `mlflow::meta`):
//! the store's contract and the MLflow endpoints, on both backends.

mod common;

use axum::Router;
use common::{TestDb, get, post_json, send};
use serde_json::{Value, json};

const API: &str = "/api/2.0/mlflow";

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn call(app: &Router, method: &str, path: &str, body: Value) -> (u16, Value) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(format!("{API}/{path}"))
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_string()))
        .unwrap();
    let (status, out) = send(app, req).await;
    (status.as_u16(), out)
}

async fn ok(app: &Router, method: &str, path: &str, body: Value) -> Value {
    let (status, out) = call(app, method, path, body.clone()).await;
    assert_eq!(status, 200, "{method} {path} {body}: {out}");
    out
}

on_both_backends! {
    async fn experiment_tags_are_kept_per_project(db: &TestDb) {
        let s = &db.store;
        let (e, created) = s
            .mlflow_create_experiment_with_tags("tagged", &kv(&[("team", "vision"), ("stage", "dev")]))
            .await
            .unwrap();
        assert!(created);
        // A second create of the name writes nothing.
        let (again, created) = s
            .mlflow_create_experiment_with_tags("tagged", &kv(&[("team", "other")]))
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again.id, e.id);
        let tags = s.mlflow_tags_of_experiment(&e).await.unwrap();
        assert_eq!(tags.get("team").map(String::as_str), Some("vision"));
        s.mlflow_set_experiment_tags(&e, &kv(&[("team", "nlp"), ("new", "1")])).await.unwrap();
        assert_eq!(s.mlflow_delete_experiment_tag(&e, "stage").await.unwrap(), 1);
        assert_eq!(s.mlflow_delete_experiment_tag(&e, "stage").await.unwrap(), 0);
        let tags = s.mlflow_tags_of_experiment(&e).await.unwrap();
        assert_eq!(tags, [("new".to_string(), "1".to_string()), ("team".into(), "nlp".into())].into());
        // Experiment 0 is the project `default`: its tags are found by id 0.
        let default = s.mlflow_experiment(0).await.unwrap().unwrap();
        s.mlflow_set_experiment_tags(&default, &kv(&[("d", "x")])).await.unwrap();
        let all = s.mlflow_experiment_tags().await.unwrap();
        assert_eq!(all[&0].get("d").map(String::as_str), Some("x"));
        assert_eq!(all[&e.id].len(), 2);
        // Another project's tags are its own.
        let (other, _) = s.mlflow_create_experiment_with_tags("plain", &[]).await.unwrap();
        assert!(s.mlflow_tags_of_experiment(&other).await.unwrap().is_empty());
    }

    async fn logged_models_keep_their_metadata(db: &TestDb) {
        use trainlens::store::mlflow_meta::NewLoggedModel;
        let s = &db.store;
        let (e, _) = s.mlflow_create_experiment_with_tags("models", &[]).await.unwrap();
        let new = NewLoggedModel {
            experiment: e.clone(),
            name: "model".into(),
            source_run_id: Some("abc".into()),
            model_type: None,
            tags: kv(&[("mlflow.source.type", "LOCAL")]),
            params: kv(&[("lr", "0.1")]),
        };
        let m = s.mlflow_create_logged_model(&new).await.unwrap();
        assert!(m.model_id.starts_with("m-") && m.model_id.len() == 34, "{}", m.model_id);
        assert_eq!((m.experiment_id, m.status.as_str()), (e.id, "LOGGED_MODEL_PENDING"));
        assert_eq!(m.params.get("lr").map(String::as_str), Some("0.1"));
        assert_eq!(s.mlflow_logged_model(&m.model_id).await.unwrap().as_ref(), Some(&m));
        assert!(s.mlflow_finalize_logged_model(&m.model_id, "LOGGED_MODEL_UPLOAD_FAILED").await.unwrap());
        assert!(!s.mlflow_finalize_logged_model("m-nope", "LOGGED_MODEL_READY").await.unwrap());
        assert!(s.mlflow_set_logged_model_kvs(&m.model_id, true, &kv(&[("k", "v")])).await.unwrap());
        assert!(s.mlflow_set_logged_model_kvs(&m.model_id, false, &kv(&[("bs", "8")])).await.unwrap());
        assert!(!s.mlflow_set_logged_model_kvs("m-nope", true, &kv(&[("k", "v")])).await.unwrap());
        let got = s.mlflow_logged_model(&m.model_id).await.unwrap().unwrap();
        assert_eq!(got.status, "LOGGED_MODEL_UPLOAD_FAILED");
        assert_eq!((got.tags.len(), got.params.len()), (2, 2));
        assert_eq!(s.mlflow_delete_logged_model_tag(&m.model_id, "k").await.unwrap(), 1);
        let second = s.mlflow_create_logged_model(&NewLoggedModel { name: "second".into(), ..new.clone() }).await.unwrap();
        let (elsewhere, _) = s.mlflow_create_experiment_with_tags("elsewhere", &[]).await.unwrap();
        s.mlflow_create_logged_model(&NewLoggedModel { experiment: elsewhere, ..new }).await.unwrap();
        let of: Vec<String> = s.mlflow_logged_models_of(&[e.id]).await.unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(of, ["second", "model"], "newest first, this experiment's only");
        assert!(s.mlflow_delete_logged_model(&second.model_id).await.unwrap());
        assert!(!s.mlflow_delete_logged_model(&second.model_id).await.unwrap());
        assert!(s.mlflow_logged_model(&second.model_id).await.unwrap().is_none());
        assert_eq!(s.mlflow_logged_models_of(&[e.id]).await.unwrap().len(), 1);
    }

    async fn experiment_tags_through_the_api(db: &TestDb) {
        let app = db.app();
        let c = ok(&app, "POST", "experiments/create", json!({ "name": "api", "tags": [{ "key": "team", "value": "a" }] })).await;
        let id = c["experiment_id"].as_str().unwrap().to_string();
        ok(&app, "POST", "experiments/set-experiment-tag", json!({ "experiment_id": id, "key": "stage", "value": "dev" })).await;
        ok(&app, "POST", "experiments/set-experiment-tag", json!({ "experiment_id": "0", "key": "stage", "value": "prod" })).await;
        let (_, g) = send(&app, get(&format!("{API}/experiments/get?experiment_id={id}"))).await;
        assert_eq!(g["experiment"]["tags"], json!([{ "key": "stage", "value": "dev" }, { "key": "team", "value": "a" }]));
        let (_, g) = send(&app, get(&format!("{API}/experiments/get-by-name?experiment_name=api"))).await;
        assert_eq!(g["experiment"]["tags"].as_array().map(Vec::len), Some(2));
        // Search by tag; `tags.name` is a tag, not the name.
        let names = |v: &Value| -> Vec<String> {
            v["experiments"].as_array().into_iter().flatten().map(|e| e["name"].as_str().unwrap().to_string()).collect()
        };
        let found = ok(&app, "POST", "experiments/search", json!({ "filter": "tags.stage = 'dev'" })).await;
        assert_eq!(names(&found), ["api"]);
        let found = ok(&app, "POST", "experiments/search", json!({ "filter": "tags.stage LIKE '%'" })).await;
        assert_eq!(names(&found), ["api", "default"]);
        assert_eq!(found["experiments"][1]["tags"], json!([{ "key": "stage", "value": "prod" }]));
        let found = ok(&app, "POST", "experiments/search", json!({ "filter": "tags.name = 'api'" })).await;
        assert!(names(&found).is_empty(), "{found}");
        // Delete, then delete again: 404.
        ok(&app, "POST", "experiments/delete-experiment-tag", json!({ "experiment_id": id, "key": "stage" })).await;
        let (status, e) = call(&app, "POST", "experiments/delete-experiment-tag", json!({ "experiment_id": id, "key": "stage" })).await;
        assert_eq!((status, e["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")));
        // Bad input: 4xx naming the field, nothing written.
        let (status, e) = call(&app, "POST", "experiments/set-experiment-tag", json!({ "experiment_id": "999", "key": "k", "value": "v" })).await;
        assert_eq!((status, e["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")));
        let (status, e) = call(&app, "POST", "experiments/set-experiment-tag", json!({ "experiment_id": id, "value": "v" })).await;
        assert_eq!(status, 400);
        assert!(e["message"].as_str().unwrap().contains("'key'"), "{e}");
        let (status, e) = call(&app, "POST", "experiments/set-experiment-tag", json!({ "experiment_id": id, "key": "k", "value": "v".repeat(20_001) })).await;
        assert_eq!((status, e["error_code"].as_str()), (400, Some("INVALID_PARAMETER_VALUE")));
        let (status, _) = call(&app, "POST", "experiments/create", json!({ "name": "bad", "tags": [{ "key": "", "value": "v" }] })).await;
        assert_eq!(status, 400);
        let (status, _) = call(&app, "POST", "experiments/get-by-name", json!({ "experiment_name": "bad" })).await;
        assert_eq!(status, 404, "a refused create makes no project");
        let (_, g) = send(&app, get(&format!("{API}/experiments/get?experiment_id={id}"))).await;
        assert_eq!(g["experiment"]["tags"], json!([{ "key": "team", "value": "a" }]));
        // The /ajax-api alias too.
        let (status, _) = send(&app, post_json("/ajax-api/2.0/mlflow/experiments/set-experiment-tag", &json!({ "experiment_id": id, "key": "ui", "value": "1" }))).await;
        assert_eq!(status.as_u16(), 200);
    }

    async fn logged_models_through_the_api(db: &TestDb) {
        let app = db.app();
        let c = ok(&app, "POST", "experiments/create", json!({ "name": "m" })).await;
        let exp = c["experiment_id"].as_str().unwrap().to_string();
        let m = ok(&app, "POST", "logged-models", json!({
            "experiment_id": exp, "name": "model", "source_run_id": "r1",
            "params": [{ "key": "lr", "value": "0.1" }], "tags": [{ "key": "t", "value": "1" }],
        })).await;
        let info = &m["model"]["info"];
        let id = info["model_id"].as_str().unwrap().to_string();
        assert_eq!((info["status"].as_str(), info["experiment_id"].as_str(), info["name"].as_str()), (Some("LOGGED_MODEL_PENDING"), Some(exp.as_str()), Some("model")));
        assert_eq!(m["model"]["data"]["params"], json!([{ "key": "lr", "value": "0.1" }]));
        let (status, g) = send(&app, get(&format!("{API}/logged-models/{id}"))).await;
        assert_eq!(status.as_u16(), 200);
        assert_eq!(g["model"], m["model"]);
        let f = ok(&app, "PATCH", &format!("logged-models/{id}"), json!({ "model_id": id, "status": "LOGGED_MODEL_UPLOAD_FAILED" })).await;
        assert_eq!(f["model"]["info"]["status"], "LOGGED_MODEL_UPLOAD_FAILED");
        let (status, _) = call(&app, "PATCH", &format!("logged-models/{id}"), json!({ "status": "DONE" })).await;
        assert_eq!(status, 400);
        ok(&app, "PATCH", &format!("logged-models/{id}/tags"), json!({ "tags": [{ "key": "u", "value": "2" }] })).await;
        ok(&app, "POST", &format!("logged-models/{id}/params"), json!({ "params": [{ "key": "bs", "value": "8" }] })).await;
        ok(&app, "DELETE", &format!("logged-models/{id}/tags/t"), json!({})).await;
        let (status, _) = call(&app, "DELETE", &format!("logged-models/{id}/tags/t"), json!({})).await;
        assert_eq!(status, 404);
        let s = ok(&app, "POST", "logged-models/search", json!({ "experiment_ids": [exp] })).await;
        let got = &s["models"][0];
        assert_eq!(got["info"]["tags"], json!([{ "key": "u", "value": "2" }]));
        assert_eq!(got["data"]["params"].as_array().map(Vec::len), Some(2));
        ok(&app, "POST", "logged-models", json!({ "experiment_id": exp })).await;
        let s = ok(&app, "POST", "logged-models/search", json!({ "experiment_ids": [exp], "max_results": 1, "order_by": [{ "field_name": "creation_timestamp", "ascending": true }] })).await;
        assert_eq!(s["models"][0]["info"]["model_id"], json!(id), "oldest first");
        assert!(s["next_page_token"].is_string());
        let (status, _) = call(&app, "POST", "logged-models/search", json!({ "experiment_ids": [exp], "filter": "name = 'x'" })).await;
        assert_eq!(status, 400);
        // Files are artifacts: refused with 501, not retried.
        let (status, _) = send(&app, get(&format!("{API}/logged-models/{id}/artifacts/directories"))).await;
        assert_eq!(status.as_u16(), 501);
        // Unknown model, unknown experiment, wrong method.
        let (status, e) = send(&app, get(&format!("{API}/logged-models/m-nope"))).await;
        assert_eq!((status.as_u16(), e["error_code"].as_str()), (404, Some("RESOURCE_DOES_NOT_EXIST")));
        let (status, _) = call(&app, "POST", "logged-models", json!({ "experiment_id": "999" })).await;
        assert_eq!(status, 404);
        let (status, e) = call(&app, "POST", "logged-models", json!({})).await;
        assert_eq!(status, 400);
        assert!(e["message"].as_str().unwrap().contains("experiment_id"), "{e}");
        let (status, e) = call(&app, "PUT", &format!("logged-models/{id}"), json!({})).await;
        assert_eq!((status, e["error_code"].as_str()), (404, Some("ENDPOINT_NOT_FOUND")));
        ok(&app, "DELETE", &format!("logged-models/{id}"), json!({})).await;
        let (status, _) = send(&app, get(&format!("{API}/logged-models/{id}"))).await;
        assert_eq!(status.as_u16(), 404);
        // MLflow 2's runs/log-model is accepted (nothing to keep without files).
        ok(&app, "POST", "runs/log-model", json!({ "run_id": "x", "model_json": "{}" })).await;
    }
}
