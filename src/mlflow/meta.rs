//! Experiment tags and MLflow 3's logged models (docs/mlflow.md).
//!
//! Logged models matter to autologging: `mlflow.keras.autolog()` (and
//! other flavors' autolog) creates a logged model *before* training and
//! attaches its metrics callback only when that works, so without these
//! endpoints an autologged run keeps its params and loses every metric.
//! trainlens keeps a model's metadata (name, source run, status, tags,
//! params); its files are artifacts, refused with 501 like every artifact,
//! so the client marks the model `LOGGED_MODEL_UPLOAD_FAILED` and warns.

use axum::Json;
use axum::extract::Path;
use axum::routing::{MethodRouter, any, delete, get, patch, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::filter::{page_token, parse_page_token};
use super::wire::{KeyValue, key_values_json, list, text};
use super::{Answer, MlflowError, Req, experiment, validate};
use crate::http::AppState;
use crate::store::mlflow_meta::{LoggedModel, NewLoggedModel};

/// The routes under the MLflow prefixes.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("experiments/set-experiment-tag", any(set_experiment_tag)),
        (
            "experiments/delete-experiment-tag",
            any(delete_experiment_tag),
        ),
        // MLflow 2's record of a model logged to a run (after its files
        // were uploaded, which trainlens refuses): accepted and dropped.
        ("runs/log-model", any(super::accept)),
        ("logged-models", post(create_model).fallback(wrong_method)),
        ("logged-models/search", any(search_models)),
        (
            "logged-models/{model_id}",
            get(get_model)
                .patch(finalize_model)
                .delete(delete_model)
                .fallback(wrong_method),
        ),
        (
            "logged-models/{model_id}/tags",
            patch(set_model_tags).fallback(wrong_method),
        ),
        (
            "logged-models/{model_id}/tags/{tag_key}",
            delete(delete_model_tag).fallback(wrong_method),
        ),
        (
            "logged-models/{model_id}/params",
            post(log_model_params).fallback(wrong_method),
        ),
        (
            "logged-models/{model_id}/artifacts/directories",
            any(super::no_artifacts),
        ),
    ]
}

async fn wrong_method(method: axum::http::Method, uri: axum::http::Uri) -> MlflowError {
    MlflowError::endpoint_not_found(&format!("{method} {}", uri.path()))
}

#[derive(Deserialize)]
struct ExperimentTag {
    #[serde(default, deserialize_with = "text")]
    experiment_id: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "text")]
    value: Option<String>,
}

fn experiment_id_of(id: Option<String>) -> Result<String, MlflowError> {
    id.filter(|s| !s.is_empty()).ok_or_else(|| {
        MlflowError::invalid("Missing value for required parameter 'experiment_id'.")
    })
}

async fn set_experiment_tag(Req(state, req): Req<ExperimentTag>) -> Answer {
    let e = experiment(&state, &experiment_id_of(req.experiment_id)?).await?;
    let tags = validate::experiment_tags(
        &[KeyValue {
            key: req.key,
            value: req.value,
        }],
        "",
    )?;
    state.store.mlflow_set_experiment_tags(&e, &tags).await?;
    Ok(Json(json!({})))
}

async fn delete_experiment_tag(Req(state, req): Req<ExperimentTag>) -> Answer {
    let e = experiment(&state, &experiment_id_of(req.experiment_id)?).await?;
    let key = req.key.unwrap_or_default();
    if state.store.mlflow_delete_experiment_tag(&e, &key).await? == 0 {
        return Err(MlflowError::not_found(format!(
            "No tag with name: {key} in experiment with id {}",
            e.id
        )));
    }
    Ok(Json(json!({})))
}

/// MLflow's JSON of a logged model. Its `artifact_uri` is where the
/// client would upload the files — refused there with 501.
pub fn model_json(m: &LoggedModel) -> Value {
    let mut info = json!({
        "model_id": m.model_id,
        "experiment_id": m.experiment_id.to_string(),
        "name": m.name,
        "creation_timestamp_ms": m.created_ms,
        "last_updated_timestamp_ms": m.updated_ms,
        "artifact_uri": format!("mlflow-artifacts:/{}/models/{}/artifacts", m.experiment_id, m.model_id),
        "status": m.status,
        "tags": key_values_json(&m.tags),
    });
    if let Some(run) = &m.source_run_id {
        info["source_run_id"] = json!(run);
    }
    if let Some(t) = &m.model_type {
        info["model_type"] = json!(t);
    }
    json!({ "info": info, "data": { "params": key_values_json(&m.params) } })
}

/// A logged model's status as MLflow sends it: its name or its number.
pub fn model_status(v: &Value) -> Result<&'static str, MlflowError> {
    const NAMES: [&str; 3] = [
        "LOGGED_MODEL_PENDING",
        "LOGGED_MODEL_READY",
        "LOGGED_MODEL_UPLOAD_FAILED",
    ];
    let found = match v {
        Value::String(s) => NAMES.iter().find(|n| **n == s.as_str()).copied(),
        Value::Number(n) => n
            .as_u64()
            .and_then(|i| i.checked_sub(1))
            .and_then(|i| NAMES.get(i as usize).copied()),
        _ => None,
    };
    found.ok_or_else(|| {
        MlflowError::invalid(format!(
            "Invalid value {v} for parameter 'status': one of {}",
            NAMES.join(", ")
        ))
    })
}

async fn model_of(state: &AppState, id: &str) -> Result<LoggedModel, MlflowError> {
    state
        .store
        .mlflow_logged_model(id)
        .await?
        .ok_or_else(|| no_model(id))
}

fn no_model(id: &str) -> MlflowError {
    MlflowError::not_found(format!("Logged model with ID '{id}' not found"))
}

fn model_answer(m: &LoggedModel) -> Answer {
    Ok(Json(json!({ "model": model_json(m) })))
}

#[derive(Deserialize)]
struct CreateModel {
    #[serde(default, deserialize_with = "text")]
    experiment_id: Option<String>,
    name: Option<String>,
    model_type: Option<String>,
    source_run_id: Option<String>,
    #[serde(default, deserialize_with = "list")]
    params: Vec<KeyValue>,
    #[serde(default, deserialize_with = "list")]
    tags: Vec<KeyValue>,
}

async fn create_model(Req(state, req): Req<CreateModel>) -> Answer {
    let e = experiment(&state, &experiment_id_of(req.experiment_id)?).await?;
    validate::batch_limits(0, req.params.len(), req.tags.len())?;
    let params = validate::params(&req.params, "params")?;
    let tags = validate::tags(&req.tags, "tags")?;
    let name = match req.name.filter(|n| !n.is_empty()) {
        Some(n) => {
            if n.chars().count() > validate::MAX_ENTITY_KEY_LENGTH {
                return Err(MlflowError::invalid(format!(
                    "'name' exceeds the maximum length of {} characters",
                    validate::MAX_ENTITY_KEY_LENGTH
                )));
            }
            n
        }
        None => format!("model-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]),
    };
    let m = state
        .store
        .mlflow_create_logged_model(&NewLoggedModel {
            experiment: e,
            name,
            source_run_id: req.source_run_id.filter(|s| !s.is_empty()),
            model_type: req.model_type.filter(|s| !s.is_empty()),
            tags,
            params,
        })
        .await?;
    model_answer(&m)
}

async fn get_model(Path(id): Path<String>, Req(state, _): Req<Value>) -> Answer {
    model_answer(&model_of(&state, &id).await?)
}

#[derive(Deserialize)]
struct Finalize {
    status: Option<Value>,
}

async fn finalize_model(Path(id): Path<String>, Req(state, req): Req<Finalize>) -> Answer {
    let status =
        model_status(req.status.as_ref().ok_or_else(|| {
            MlflowError::invalid("Missing value for required parameter 'status'.")
        })?)?;
    model_of(&state, &id).await?;
    state
        .store
        .mlflow_finalize_logged_model(&id, status)
        .await?;
    model_answer(&model_of(&state, &id).await?)
}

async fn delete_model(Path(id): Path<String>, Req(state, _): Req<Value>) -> Answer {
    if !state.store.mlflow_delete_logged_model(&id).await? {
        return Err(no_model(&id));
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct ModelKvs {
    #[serde(default, deserialize_with = "list")]
    tags: Vec<KeyValue>,
    #[serde(default, deserialize_with = "list")]
    params: Vec<KeyValue>,
}

async fn set_model_tags(Path(id): Path<String>, Req(state, req): Req<ModelKvs>) -> Answer {
    validate::batch_limits(0, 0, req.tags.len())?;
    let tags = validate::tags(&req.tags, "tags")?;
    set_kvs(&state, &id, true, &tags).await
}

async fn log_model_params(Path(id): Path<String>, Req(state, req): Req<ModelKvs>) -> Answer {
    validate::batch_limits(0, req.params.len(), 0)?;
    let params = validate::params(&req.params, "params")?;
    set_kvs(&state, &id, false, &params).await
}

async fn set_kvs(state: &AppState, id: &str, tags: bool, kvs: &[(String, String)]) -> Answer {
    if !state
        .store
        .mlflow_set_logged_model_kvs(id, tags, kvs)
        .await?
    {
        return Err(no_model(id));
    }
    Ok(Json(json!({})))
}

async fn delete_model_tag(
    Path((id, key)): Path<(String, String)>,
    Req(state, _): Req<Value>,
) -> Answer {
    model_of(&state, &id).await?;
    if state
        .store
        .mlflow_delete_logged_model_tag(&id, &key)
        .await?
        == 0
    {
        return Err(MlflowError::not_found(format!(
            "No tag with key '{key}' found for logged model with ID '{id}'"
        )));
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct SearchModels {
    #[serde(default, deserialize_with = "list")]
    experiment_ids: Vec<Value>,
    filter: Option<String>,
    #[serde(default, deserialize_with = "list")]
    datasets: Vec<Value>,
    #[serde(default, deserialize_with = "super::wire::int")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "list")]
    order_by: Vec<ModelOrder>,
    page_token: Option<String>,
}

#[derive(Deserialize)]
struct ModelOrder {
    field_name: Option<String>,
    ascending: Option<bool>,
}

async fn search_models(Req(state, req): Req<SearchModels>) -> Answer {
    if req.filter.as_deref().is_some_and(|f| !f.trim().is_empty()) {
        return Err(MlflowError::invalid(
            "trainlens does not filter logged models: search them without 'filter'",
        ));
    }
    if !req.datasets.is_empty() {
        return Err(MlflowError::invalid(
            "trainlens does not keep datasets: search logged models without 'datasets'",
        ));
    }
    let max = validate::max_results(req.max_results, 100, 50_000)?;
    let offset = parse_page_token(req.page_token.as_deref())?;
    let mut ids = Vec::new();
    for e in &req.experiment_ids {
        let text = match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        ids.push(
            text.trim()
                .parse::<i64>()
                .map_err(|_| MlflowError::invalid(format!("Invalid experiment id '{text}'")))?,
        );
    }
    let mut models = state.store.mlflow_logged_models_of(&ids).await?;
    // Newest first (the store's order), then each term, last term first.
    for o in req.order_by.iter().rev() {
        let asc = o.ascending.unwrap_or(true);
        let key = o.field_name.as_deref().unwrap_or("");
        let by: fn(&LoggedModel, &LoggedModel) -> std::cmp::Ordering = match key {
            "creation_timestamp" | "creation_time" => |a, b| a.created_ms.cmp(&b.created_ms),
            "last_updated_timestamp" | "last_updated_time" => {
                |a, b| a.updated_ms.cmp(&b.updated_ms)
            }
            "name" => |a, b| a.name.cmp(&b.name),
            "model_id" => |a, b| a.model_id.cmp(&b.model_id),
            other => {
                return Err(MlflowError::invalid(format!(
                    "Invalid order_by field '{other}': one of creation_timestamp, \
                     last_updated_timestamp, name, model_id"
                )));
            }
        };
        models.sort_by(|a, b| if asc { by(a, b) } else { by(b, a) });
    }
    let total = models.len();
    let page: Vec<Value> = models
        .iter()
        .skip(offset)
        .take(max)
        .map(model_json)
        .collect();
    let mut out = json!({ "models": page });
    if offset + max < total {
        out["next_page_token"] = json!(page_token(offset + max));
    }
    Ok(Json(out))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn statuses_by_name_or_number() {
        assert_eq!(
            model_status(&json!("LOGGED_MODEL_READY")).unwrap(),
            "LOGGED_MODEL_READY"
        );
        assert_eq!(
            model_status(&json!(3)).unwrap(),
            "LOGGED_MODEL_UPLOAD_FAILED"
        );
        for bad in [json!(0), json!(4), json!("READY"), json!(null)] {
            let e = model_status(&bad).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
        }
    }

    #[test]
    fn model_json_is_mlflow_s() {
        let m = LoggedModel {
            model_id: "m-1".into(),
            experiment_id: 0,
            name: "model".into(),
            source_run_id: Some("r".into()),
            model_type: None,
            status: "LOGGED_MODEL_PENDING".into(),
            created_ms: 5,
            updated_ms: 6,
            tags: BTreeMap::from([("a".into(), "b".into())]),
            params: BTreeMap::new(),
        };
        let j = model_json(&m);
        assert_eq!(j["info"]["experiment_id"], "0");
        assert_eq!(j["info"]["tags"], json!([{ "key": "a", "value": "b" }]));
        assert_eq!(j["info"]["source_run_id"], "r");
        assert!(j["info"].get("model_type").is_none());
        assert_eq!(
            j["info"]["artifact_uri"],
            "mlflow-artifacts:/0/models/m-1/artifacts"
        );
        assert_eq!(j["data"]["params"], json!([]));
    }
}
