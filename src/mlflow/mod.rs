//! The MLflow tracking API under `/api/2.0/mlflow/` (and the UI's
//! `/ajax-api/2.0/mlflow/`), so that a training script using the `mlflow`
//! client with `MLFLOW_TRACKING_URI` pointed here is stored and diagnosed
//! like any other run. The mapping (experiments are projects, params go
//! into the config, MLflow run ids are run keys, stepless metrics) is
//! documented in docs/mlflow.md.
//!
//! Each handler reads the request ([`wire::request`]), validates it
//! ([`validate`]), calls the store (`crate::store::mlflow`) and answers
//! MLflow's JSON; errors are [`MlflowError`]s.

pub mod error;
pub mod filter;
pub mod meta;
pub mod validate;
pub mod wire;

use axum::body::Bytes;
use axum::extract::{FromRequest, RawQuery, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::AppState;
use crate::store::mlflow::{MlBatch, MlMetric, MlNewRun, MlRun, MlRunUpdate, status_from_mlflow};
pub use error::MlflowError;
use filter::{page_token, parse_filter, parse_order_by, parse_page_token};
use wire::{KeyValue, MetricIn, Searched, double, experiment_json, int, list, request, text};

type Answer = Result<Json<Value>, MlflowError>;

/// The state and a request of type `T` read from the query string and
/// the JSON body ([`wire::request`]), as every handler takes them.
struct Req<T>(AppState, T);

impl<T: serde::de::DeserializeOwned> FromRequest<AppState> for Req<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let q = req.uri().query().map(str::to_owned);
        let body = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        request(q.as_deref(), &body)
            .map(|r| Req(state.clone(), r))
            .map_err(IntoResponse::into_response)
    }
}

/// The prefixes MLflow's client and UI use.
const PREFIXES: [&str; 2] = ["/api/2.0/mlflow", "/ajax-api/2.0/mlflow"];

pub fn router() -> Router<AppState> {
    let routes: [(&str, MethodRouter<AppState>); 21] = [
        ("experiments/create", any(create_experiment)),
        ("experiments/get", any(get_experiment)),
        ("experiments/get-by-name", any(get_experiment_by_name)),
        ("experiments/search", any(search_experiments)),
        ("experiments/list", any(search_experiments)),
        ("runs/create", any(create_run)),
        ("runs/get", any(get_run)),
        ("runs/update", any(update_run)),
        ("runs/delete", any(delete_run)),
        ("runs/restore", any(restore_run)),
        ("runs/search", any(search_runs)),
        ("runs/log-metric", any(log_metric)),
        ("runs/log-parameter", any(log_param)),
        ("runs/log-batch", any(log_batch)),
        ("runs/set-tag", any(set_tag)),
        ("runs/delete-tag", any(delete_tag)),
        ("runs/log-inputs", any(accept)),
        ("runs/outputs", any(accept)),
        ("metrics/get-history", any(get_history)),
        ("metrics/get-history-bulk-interval", any(get_history_bulk)),
        ("artifacts/list", any(no_artifacts)),
    ];
    let routes: Vec<(&str, MethodRouter<AppState>)> =
        routes.into_iter().chain(meta::routes()).collect();
    let mut r = Router::new();
    for prefix in PREFIXES {
        for (path, handler) in &routes {
            r = r.route(&format!("{prefix}/{path}"), handler.clone());
        }
        r = r.route(&format!("{prefix}/{{*rest}}"), any(unknown));
    }
    r.route("/api/2.0/mlflow-artifacts/{*rest}", any(no_artifacts))
        .route("/ajax-api/2.0/mlflow-artifacts/{*rest}", any(no_artifacts))
}

async fn unknown(uri: axum::http::Uri) -> MlflowError {
    MlflowError::endpoint_not_found(uri.path())
}

async fn no_artifacts() -> MlflowError {
    MlflowError::no_artifacts()
}

/// Endpoints accepted and ignored (dataset inputs, model outputs).
async fn accept() -> Json<Value> {
    Json(json!({}))
}

fn ms_now() -> i64 {
    (crate::store::now() * 1000.0) as i64
}

/// The experiment of an id as MLflow sends it (a string of digits).
async fn experiment(
    state: &AppState,
    id: &str,
) -> Result<crate::store::mlflow::Experiment, MlflowError> {
    let missing = || MlflowError::not_found(format!("No Experiment with id={id} exists"));
    let n: i64 = id.trim().parse().map_err(|_| missing())?;
    state.store.mlflow_experiment(n).await?.ok_or_else(missing)
}

/// The run of `run_id` (or the deprecated `run_uuid`).
async fn run_of(
    state: &AppState,
    run_id: &Option<String>,
    run_uuid: &Option<String>,
) -> Result<MlRun, MlflowError> {
    let Some(id) = run_id
        .as_deref()
        .or(run_uuid.as_deref())
        .filter(|s| !s.is_empty())
    else {
        return Err(MlflowError::invalid(
            "Missing value for required parameter 'run_id'. See the API docs for more information about request parameters.",
        ));
    };
    state
        .store
        .mlflow_run(id)
        .await?
        .ok_or_else(|| MlflowError::not_found(format!("Run '{id}' not found")))
}

/// A run that may be logged to: MLflow refuses deleted runs.
async fn active_run(
    state: &AppState,
    run_id: &Option<String>,
    run_uuid: &Option<String>,
) -> Result<MlRun, MlflowError> {
    let run = run_of(state, run_id, run_uuid).await?;
    if run.lifecycle_stage != "active" {
        return Err(MlflowError::invalid(format!(
            "The run {} must be in the 'active' state. Current state is {}.",
            run.mlflow_id, run.lifecycle_stage
        )));
    }
    Ok(run)
}

#[derive(Deserialize)]
struct CreateExperiment {
    name: Option<String>,
    #[serde(default, deserialize_with = "list")]
    tags: Vec<KeyValue>,
}

async fn create_experiment(Req(state, req): Req<CreateExperiment>) -> Answer {
    let name = validate::experiment_name(req.name)?;
    let tags = validate::experiment_tags(&req.tags, "tags")?;
    let (e, created) = state
        .store
        .mlflow_create_experiment_with_tags(&name, &tags)
        .await?;
    if !created {
        return Err(MlflowError::already_exists(format!(
            "Experiment '{name}' already exists."
        )));
    }
    Ok(Json(json!({ "experiment_id": e.id.to_string() })))
}

#[derive(Deserialize)]
struct GetExperiment {
    #[serde(default, deserialize_with = "text")]
    experiment_id: Option<String>,
    experiment_name: Option<String>,
}

async fn get_experiment(Req(state, req): Req<GetExperiment>) -> Answer {
    let id = req.experiment_id.ok_or_else(|| {
        MlflowError::invalid("Missing value for required parameter 'experiment_id'.")
    })?;
    let e = experiment(&state, &id).await?;
    experiment_answer(&state, &e).await
}

async fn get_experiment_by_name(Req(state, req): Req<GetExperiment>) -> Answer {
    let name = req.experiment_name.ok_or_else(|| {
        MlflowError::invalid("Missing value for required parameter 'experiment_name'.")
    })?;
    if name == crate::store::mlflow::DEFAULT_EXPERIMENT {
        state.store.mlflow_experiment(0).await?;
    }
    let e = state
        .store
        .mlflow_experiment_by_name(&name)
        .await?
        .ok_or_else(|| {
            MlflowError::not_found(format!("Could not find experiment with name '{name}'"))
        })?;
    experiment_answer(&state, &e).await
}

/// The answer naming an experiment with its tags.
async fn experiment_answer(state: &AppState, e: &crate::store::mlflow::Experiment) -> Answer {
    let tags = state.store.mlflow_tags_of_experiment(e).await?;
    Ok(Json(json!({ "experiment": experiment_json(e, &tags) })))
}

#[derive(Deserialize)]
struct SearchExperiments {
    #[serde(default, deserialize_with = "int")]
    max_results: Option<i64>,
    filter: Option<String>,
    page_token: Option<String>,
}

async fn search_experiments(Req(state, req): Req<SearchExperiments>) -> Answer {
    let clauses = parse_filter(req.filter.as_deref().unwrap_or(""))?;
    let max = validate::max_results(req.max_results, 1000, 50_000)?;
    let offset = parse_page_token(req.page_token.as_deref())?;
    state.store.mlflow_experiment(0).await?;
    let tags = state.store.mlflow_experiment_tags().await?;
    let none = std::collections::BTreeMap::new();
    let all: Vec<Value> = state
        .store
        .mlflow_experiments()
        .await?
        .iter()
        .map(|e| ExperimentFields(e, tags.get(&e.id).unwrap_or(&none)))
        .filter(|f| clauses.iter().all(|c| c.matches(f)))
        .map(|f| experiment_json(f.0, f.1))
        .collect();
    let page: Vec<Value> = all.iter().skip(offset).take(max).cloned().collect();
    Ok(paged("experiments", page, offset, max, all.len()))
}

/// A page of a search's answer under `field`, with the token of the
/// next page if `total` goes on past it.
fn paged(field: &str, page: Vec<Value>, offset: usize, max: usize, total: usize) -> Json<Value> {
    let mut out = json!({ field: page });
    if offset + max < total {
        out["next_page_token"] = json!(page_token(offset + max));
    }
    Json(out)
}

/// An experiment and its tags, as the search filter sees them:
/// attributes `name`, `experiment_id`, `creation_time`,
/// `last_update_time`, and `tags.<key>`.
struct ExperimentFields<'a>(
    &'a crate::store::mlflow::Experiment,
    &'a std::collections::BTreeMap<String, String>,
);

impl filter::Fields for ExperimentFields<'_> {
    fn text(&self, entity: filter::Entity, key: &str) -> Option<String> {
        match (entity, key) {
            (filter::Entity::Tag, _) => self.1.get(key).cloned(),
            (filter::Entity::Attribute, "name") => Some(self.0.name.clone()),
            (filter::Entity::Attribute, "experiment_id") => Some(self.0.id.to_string()),
            _ => None,
        }
    }
    fn number(&self, entity: filter::Entity, key: &str) -> Option<f64> {
        (entity == filter::Entity::Attribute && matches!(key, "creation_time" | "last_update_time"))
            .then_some(self.0.created_ms as f64)
    }
}

#[derive(Deserialize)]
struct CreateRun {
    #[serde(default, deserialize_with = "text")]
    experiment_id: Option<String>,
    user_id: Option<String>,
    run_name: Option<String>,
    #[serde(default, deserialize_with = "int")]
    start_time: Option<i64>,
    #[serde(default, deserialize_with = "list")]
    tags: Vec<KeyValue>,
}

async fn create_run(Req(state, req): Req<CreateRun>) -> Answer {
    let exp = experiment(&state, req.experiment_id.as_deref().unwrap_or("0")).await?;
    let mut tags = validate::tags(&req.tags, "tags")?;
    let name = req
        .run_name
        .filter(|n| !n.is_empty())
        .or_else(|| {
            tags.iter()
                .find(|(k, _)| k == "mlflow.runName")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| format!("run-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]));
    if !tags.iter().any(|(k, _)| k == "mlflow.runName") {
        tags.push(("mlflow.runName".into(), name.clone()));
    }
    let user_id = req
        .user_id
        .or_else(|| {
            tags.iter()
                .find(|(k, _)| k == "mlflow.user")
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_default();
    let run = state
        .store
        .mlflow_create_run(&MlNewRun {
            experiment: exp,
            name,
            start_time: req.start_time.unwrap_or_else(ms_now),
            user_id,
            tags,
        })
        .await?;
    run_answer(&state, &run).await
}

/// The answer naming a run with its data.
async fn run_answer(state: &AppState, run: &MlRun) -> Answer {
    let data = state.store.mlflow_data(run.id).await?;
    Ok(Json(json!({ "run": wire::run_json(run, &data) })))
}

#[derive(Deserialize)]
struct RunRef {
    run_id: Option<String>,
    run_uuid: Option<String>,
}

async fn get_run(Req(state, req): Req<RunRef>) -> Answer {
    let run = run_of(&state, &req.run_id, &req.run_uuid).await?;
    run_answer(&state, &run).await
}

#[derive(Deserialize)]
struct UpdateRun {
    run_id: Option<String>,
    run_uuid: Option<String>,
    status: Option<String>,
    #[serde(default, deserialize_with = "int")]
    end_time: Option<i64>,
    run_name: Option<String>,
}

async fn update_run(Req(state, req): Req<UpdateRun>) -> Answer {
    let run = active_run(&state, &req.run_id, &req.run_uuid).await?;
    if let Some(s) = &req.status
        && status_from_mlflow(s).is_none()
    {
        return Err(MlflowError::invalid(format!(
            "Invalid value '{s}' for parameter 'status': one of RUNNING, SCHEDULED, FINISHED, FAILED, KILLED"
        )));
    }
    let update = MlRunUpdate {
        status: req.status,
        end_time: req.end_time,
        name: req.run_name.filter(|n| !n.is_empty()),
    };
    state.store.mlflow_update_run(&run, &update).await?;
    let run = run_of(&state, &Some(run.mlflow_id), &None).await?;
    Ok(Json(json!({ "run_info": wire::run_info_json(&run) })))
}

async fn delete_run(Req(state, req): Req<RunRef>) -> Answer {
    set_lifecycle(&state, &req, "deleted").await
}

async fn restore_run(Req(state, req): Req<RunRef>) -> Answer {
    set_lifecycle(&state, &req, "active").await
}

async fn set_lifecycle(state: &AppState, req: &RunRef, stage: &str) -> Answer {
    let run = run_of(state, &req.run_id, &req.run_uuid).await?;
    state.store.mlflow_set_lifecycle(&run, stage).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct SearchRuns {
    #[serde(default, deserialize_with = "list")]
    experiment_ids: Vec<Value>,
    filter: Option<String>,
    run_view_type: Option<String>,
    #[serde(default, deserialize_with = "int")]
    max_results: Option<i64>,
    #[serde(default, deserialize_with = "list")]
    order_by: Vec<String>,
    page_token: Option<String>,
}

async fn search_runs(Req(state, req): Req<SearchRuns>) -> Answer {
    let clauses = parse_filter(req.filter.as_deref().unwrap_or(""))?;
    let order: Vec<_> = req
        .order_by
        .iter()
        .map(|o| parse_order_by(o))
        .collect::<Result<_, _>>()?;
    let max = validate::max_results(req.max_results, 1000, 50_000)?;
    let offset = parse_page_token(req.page_token.as_deref())?;
    let view = req.run_view_type.as_deref().unwrap_or("ACTIVE_ONLY");
    let stage_ok = |stage: &str| match view {
        "ALL" => true,
        "DELETED_ONLY" => stage == "deleted",
        _ => stage == "active",
    };
    let mut ids = Vec::new();
    for e in &req.experiment_ids {
        let text = match e {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        match text.trim().parse::<i64>() {
            Ok(id) => ids.push(id),
            Err(_) => {
                return Err(MlflowError::invalid(format!(
                    "Invalid experiment id '{text}'"
                )));
            }
        }
    }
    let runs = state.store.mlflow_runs_of(&ids).await?;
    let mut kept: Vec<Searched> = runs
        .iter()
        .map(|(r, d)| Searched(r, d))
        .filter(|s| stage_ok(&s.0.lifecycle_stage) && clauses.iter().all(|c| c.matches(s)))
        .collect();
    filter::order_runs(&mut kept, &order);
    let page: Vec<Value> = kept
        .iter()
        .skip(offset)
        .take(max)
        .map(|s| wire::run_json(s.0, s.1))
        .collect();
    Ok(paged("runs", page, offset, max, kept.len()))
}

#[derive(Deserialize)]
struct LogMetric {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "double")]
    value: Option<f64>,
    #[serde(default, deserialize_with = "int")]
    timestamp: Option<i64>,
    #[serde(default, deserialize_with = "int")]
    step: Option<i64>,
}

async fn log_metric(Req(state, req): Req<LogMetric>) -> Answer {
    let metric = MetricIn {
        key: req.key,
        value: req.value,
        timestamp: req.timestamp,
        step: req.step,
    };
    let metrics = validate::metrics(std::slice::from_ref(&metric), "", ms_now())?;
    let batch = MlBatch {
        metrics,
        ..MlBatch::default()
    };
    log(&state, &req.run_id, &req.run_uuid, batch).await
}

#[derive(Deserialize)]
struct LogParam {
    run_id: Option<String>,
    run_uuid: Option<String>,
    key: Option<String>,
    #[serde(default, deserialize_with = "text")]
    value: Option<String>,
}

async fn log_param(Req(state, req): Req<LogParam>) -> Answer {
    log_pair(&state, req, validate::params, |params| MlBatch {
        params,
        ..MlBatch::default()
    })
    .await
}

async fn set_tag(Req(state, req): Req<LogParam>) -> Answer {
    log_pair(&state, req, validate::tags, |tags| MlBatch {
        tags,
        ..MlBatch::default()
    })
    .await
}

/// Logs the one key and value of `req`, validated by `check` and put
/// into a batch by `into`.
async fn log_pair<V>(
    state: &AppState,
    req: LogParam,
    check: fn(&[KeyValue], &str) -> Result<V, MlflowError>,
    into: fn(V) -> MlBatch,
) -> Answer {
    let pair = KeyValue {
        key: req.key,
        value: req.value,
    };
    let batch = into(check(std::slice::from_ref(&pair), "")?);
    log(state, &req.run_id, &req.run_uuid, batch).await
}

async fn delete_tag(Req(state, req): Req<LogParam>) -> Answer {
    let run = active_run(&state, &req.run_id, &req.run_uuid).await?;
    let key = req.key.unwrap_or_default();
    if state.store.mlflow_delete_tag(run.id, &key).await? == 0 {
        return Err(MlflowError::not_found(format!(
            "No tag with name: {key} in run with id {}",
            run.mlflow_id
        )));
    }
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct LogBatch {
    run_id: Option<String>,
    run_uuid: Option<String>,
    #[serde(default, deserialize_with = "list")]
    metrics: Vec<MetricIn>,
    #[serde(default, deserialize_with = "list")]
    params: Vec<KeyValue>,
    #[serde(default, deserialize_with = "list")]
    tags: Vec<KeyValue>,
}

async fn log_batch(Req(state, req): Req<LogBatch>) -> Answer {
    validate::batch_limits(req.metrics.len(), req.params.len(), req.tags.len())?;
    let batch = MlBatch {
        metrics: validate::metrics(&req.metrics, "metrics", ms_now())?,
        params: validate::params(&req.params, "params")?,
        tags: validate::tags(&req.tags, "tags")?,
    };
    log(&state, &req.run_id, &req.run_uuid, batch).await
}

/// Writes a validated batch into an active run; refuses a param logged
/// before with another value, as MLflow does.
async fn log(
    state: &AppState,
    run_id: &Option<String>,
    run_uuid: &Option<String>,
    batch: MlBatch,
) -> Answer {
    let run = active_run(state, run_id, run_uuid).await?;
    if !batch.params.is_empty() {
        let old = state.store.mlflow_params(run.id).await?;
        for (k, v) in &batch.params {
            if let Some(was) = old.get(k)
                && was != v
            {
                return Err(MlflowError::invalid(format!(
                    "Changing param values is not allowed. Param with key='{k}' was already logged \
                     with value='{was}' for run ID='{}'. Attempted logging new value '{v}'.",
                    run.mlflow_id
                )));
            }
        }
    }
    state.store.mlflow_log(run.id, &batch).await?;
    Ok(Json(json!({})))
}

#[derive(Deserialize)]
struct GetHistory {
    run_id: Option<String>,
    run_uuid: Option<String>,
    metric_key: Option<String>,
    #[serde(default, deserialize_with = "int")]
    max_results: Option<i64>,
    page_token: Option<String>,
}

async fn get_history(
    State(state): State<AppState>,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    match history(&state, q.as_deref(), &body).await {
        Ok(body) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// The answer of `metrics/get-history`, written straight to bytes (a
/// history of 100k points is a few MB).
async fn history(state: &AppState, q: Option<&str>, body: &[u8]) -> Result<Vec<u8>, MlflowError> {
    let req: GetHistory = request(q, body)?;
    let key = req.metric_key.ok_or_else(|| {
        MlflowError::invalid("Missing value for required parameter 'metric_key'.")
    })?;
    let run = run_of(state, &req.run_id, &req.run_uuid).await?;
    let points = state
        .store
        .mlflow_history(run.id, &key)
        .await?
        .unwrap_or_default();
    let offset = parse_page_token(req.page_token.as_deref())?;
    let max = match req.max_results {
        Some(n) if n <= 0 => {
            return Err(MlflowError::invalid(format!(
                "Invalid value {n} for parameter 'max_results': it must be positive"
            )));
        }
        Some(n) => n as usize,
        None => usize::MAX,
    };
    let page = points.iter().skip(offset).take(max);
    let mut out = Vec::with_capacity(points.len().min(max) * 64 + 64);
    out.extend_from_slice(b"{\"metrics\":[");
    let key_json = serde_json::to_string(&key).expect("a string serialises");
    for (i, m) in page.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_metric(&mut out, &key_json, m);
    }
    out.push(b']');
    if offset.saturating_add(max) < points.len() {
        out.extend_from_slice(b",\"next_page_token\":");
        out.extend_from_slice(
            serde_json::to_string(&page_token(offset + max))
                .expect("a string serialises")
                .as_bytes(),
        );
    }
    out.push(b'}');
    Ok(out)
}

fn write_metric(out: &mut Vec<u8>, key_json: &str, m: &MlMetric) {
    use std::io::Write as _;
    let value = wire::double_json(m.value);
    let _ = write!(
        out,
        "{{\"key\":{key_json},\"value\":{value},\"timestamp\":{},\"step\":{}}}",
        m.timestamp, m.step
    );
}

#[derive(Deserialize)]
struct GetHistoryBulk {
    #[serde(default, deserialize_with = "list")]
    run_ids: Vec<String>,
    metric_key: Option<String>,
    #[serde(default, deserialize_with = "int")]
    start_step: Option<i64>,
    #[serde(default, deserialize_with = "int")]
    end_step: Option<i64>,
    #[serde(default, deserialize_with = "int")]
    max_results: Option<i64>,
}

/// Most points per run of `get-history-bulk-interval`, as MLflow.
const BULK_MAX_RESULTS: usize = 2500;
const BULK_MAX_RUNS: usize = 100;

async fn get_history_bulk(Req(state, req): Req<GetHistoryBulk>) -> Answer {
    let key = req.metric_key.ok_or_else(|| {
        MlflowError::invalid("Missing value for required parameter 'metric_key'.")
    })?;
    if req.run_ids.is_empty() {
        return Err(MlflowError::invalid(
            "GetMetricHistoryBulkInterval request must specify at least one run_id.",
        ));
    }
    if req.run_ids.len() > BULK_MAX_RUNS {
        return Err(MlflowError::invalid(format!(
            "GetMetricHistoryBulkInterval request cannot specify more than {BULK_MAX_RUNS} run_ids. Received {} run_ids.",
            req.run_ids.len()
        )));
    }
    let max = validate::max_results(
        req.max_results,
        BULK_MAX_RESULTS as i64,
        BULK_MAX_RESULTS as i64,
    )?;
    let (lo, hi) = (
        req.start_step.unwrap_or(i64::MIN),
        req.end_step.unwrap_or(i64::MAX),
    );
    let mut out = Vec::new();
    for id in &req.run_ids {
        let run = run_of(&state, &Some(id.clone()), &None).await?;
        let mut points: Vec<MlMetric> = state
            .store
            .mlflow_history(run.id, &key)
            .await?
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.step >= lo && m.step <= hi)
            .collect();
        points.sort_by(|a, b| a.step.cmp(&b.step).then(a.timestamp.cmp(&b.timestamp)));
        for m in sample_evenly(&points, max) {
            let mut j = wire::metric_json(&key, m);
            j["run_id"] = json!(run.mlflow_id);
            out.push(j);
        }
    }
    Ok(Json(json!({ "metrics": out })))
}

/// At most `max` points spread evenly, the first and last kept.
pub fn sample_evenly<T>(points: &[T], max: usize) -> Vec<&T> {
    let n = points.len();
    if n <= max {
        return points.iter().collect();
    }
    if max <= 1 {
        return points.last().into_iter().collect();
    }
    (0..max).map(|i| &points[i * (n - 1) / (max - 1)]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn even_samples_keep_both_ends() {
        let v: Vec<u32> = (0..10_000).collect();
        let s = sample_evenly(&v, 2500);
        assert_eq!(s.len(), 2500);
        assert_eq!((*s[0], *s[2499]), (0, 9999));
        assert_eq!(sample_evenly(&v[..3], 2500).len(), 3);
    }

    #[test]
    fn metric_json_is_mlflow_s() {
        let mut out = Vec::new();
        write_metric(
            &mut out,
            "\"loss\"",
            &MlMetric {
                value: f64::NAN,
                timestamp: 5,
                step: 0,
            },
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"key":"loss","value":"NaN","timestamp":5,"step":0}"#
        );
    }
}
