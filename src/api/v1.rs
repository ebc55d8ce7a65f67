//! `/api/v1`: create and list runs, ingest records, read them back.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::error::AppError;
use crate::app::AppState;
use crate::ingest::{self, InputError, RunLine};
use crate::record::{RunRecord, Value};
use crate::store::{IngestOutcome, NewRun, Run, RunFilter, RunStatus};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects", get(list_projects))
        .route("/api/v1/runs", post(create_run).get(list_runs))
        .route("/api/v1/import", post(import))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/runs/{id}/records", post(ingest_records))
        .route(
            "/api/v1/runs/{id}/scalars",
            post(ingest_scalars).get(read_scalars),
        )
        .route("/api/v1/runs/{id}/series", get(list_series))
        .route("/api/v1/runs/{id}/histograms", get(read_histograms))
        .route("/api/v1/runs/{id}/model", get(read_model))
        .route("/api/v1/runs/{id}/datasets", get(read_datasets))
        .route("/api/v1/runs/{id}/export", get(export))
        .route("/api/v1/runs/{id}/finish", post(finish_run))
        .route("/api/v1/runs/{id}/heartbeat", post(heartbeat))
}

/// The raw request body, with the app's errors for a body over the limit.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let limit = req
            .extensions()
            .get::<BodyLimit>()
            .map_or(usize::MAX, |l| l.0);
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(Body(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(AppError::PayloadTooLarge(limit))
            }
            Err(e) => Err(AppError::bad_request(
                "unreadable_body",
                None,
                e.body_text(),
            )),
        }
    }
}

/// The configured body limit, put in request extensions for error messages.
#[derive(Clone, Copy)]
pub struct BodyLimit(pub usize);

/// A JSON body parsed with the failing field named.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        let Body(bytes) = Body::from_request(req, state).await?;
        Ok(JsonBody(ingest::parse_json(&bytes)?))
    }
}

/// Query parameters, with a 400 in the app's format when they do not parse.
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AppError> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(Query)
            .map_err(|e| {
                let path = e.path().to_string();
                AppError::bad_request(
                    "invalid_query",
                    (path != ".").then_some(path),
                    e.into_inner().to_string(),
                )
            })
    }
}

pub(crate) fn run_id(raw: &str) -> Result<Uuid, AppError> {
    Uuid::parse_str(raw).map_err(|_| {
        AppError::bad_request(
            "invalid_id",
            "id".to_string(),
            format!("{raw:?} is not a run id (a UUID)"),
        )
    })
}

/// A run as the API returns it.
#[derive(Serialize)]
pub struct RunJson {
    #[serde(flatten)]
    run: Run,
    /// The run's page.
    url: String,
}

impl RunJson {
    fn new(state: &AppState, run: Run) -> Self {
        let url = state.run_url(run.id);
        RunJson { run, url }
    }
}

async fn list_projects(State(state): State<AppState>) -> Result<Response, AppError> {
    let projects = state.store.list_projects().await?;
    Ok(Json(json!({ "projects": projects })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRun {
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "crate::record::default_project")]
    project: String,
    #[serde(default)]
    config: Option<serde_json::Value>,
    #[serde(default)]
    tags: Vec<String>,
}

async fn create_run(
    State(state): State<AppState>,
    JsonBody(body): JsonBody<CreateRun>,
) -> Result<Response, AppError> {
    let record = RunRecord {
        name: body
            .name
            .unwrap_or_else(|| format!("run-{}", &Uuid::now_v7().simple().to_string()[..8])),
        project: body.project,
        config: body.config.unwrap_or_else(|| json!({})),
        tags: body.tags,
    };
    ingest::validate_run(&record)?;
    let run = state.store.create_run(&NewRun::from(record)).await?;
    Ok((StatusCode::CREATED, Json(RunJson::new(&state, run))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRuns {
    project: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    offset: Option<u32>,
}

async fn list_runs(
    State(state): State<AppState>,
    Query(q): Query<ListRuns>,
) -> Result<Response, AppError> {
    let status = q
        .status
        .map(|s| {
            s.parse::<RunStatus>().map_err(|_| {
                AppError::bad_request(
                    "invalid_query",
                    "status".to_string(),
                    format!("status {s:?} is not one of running, finished, failed, crashed"),
                )
            })
        })
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0);
    let filter = RunFilter {
        project: q.project,
        status,
        limit: limit + 1,
        offset,
    };
    let mut runs = state.store.list_runs(&filter).await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let runs: Vec<RunJson> = runs.into_iter().map(|r| RunJson::new(&state, r)).collect();
    let next_offset = more.then_some(offset + limit);
    Ok(Json(json!({ "runs": runs, "next_offset": next_offset })).into_response())
}

async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let run = state
        .store
        .get_run(run_id(&id)?)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no run {id}")))?;
    Ok(Json(RunJson::new(&state, run)).into_response())
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, AppError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let bad = || {
        AppError::bad_request(
            "invalid_header",
            "Idempotency-Key".to_string(),
            "Idempotency-Key must be 1 to 256 visible ASCII characters",
        )
    };
    let s = v.to_str().map_err(|_| bad())?;
    if s.is_empty() || s.len() > 256 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_string()))
}

async fn ingest_records(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<IngestOutcome>, AppError> {
    let id = run_id(&id)?;
    let key = idempotency_key(&headers)?;
    let rec = ingest::parse_ndjson(&body, RunLine::Forbidden)?;
    Ok(Json(
        state.store.ingest(id, &rec.batch, key.as_deref()).await?,
    ))
}

async fn ingest_scalars(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Body(body): Body,
) -> Result<Json<IngestOutcome>, AppError> {
    let id = run_id(&id)?;
    let key = idempotency_key(&headers)?;
    let batch = ingest::parse_columnar(&body)?;
    Ok(Json(state.store.ingest(id, &batch, key.as_deref()).await?))
}

async fn import(State(state): State<AppState>, Body(body): Body) -> Result<Response, AppError> {
    let rec = ingest::parse_ndjson(&body, RunLine::Required)?;
    let run = rec.run.expect("parse_ndjson(Required) returns a run");
    let run = state.store.import(&NewRun::from(run), &rec.batch).await?;
    Ok((StatusCode::CREATED, Json(RunJson::new(&state, run))).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Finish {
    status: String,
    #[serde(default)]
    step: Option<i64>,
}

async fn finish_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Finish>,
) -> Result<Response, AppError> {
    let id = run_id(&id)?;
    if body.step.is_some_and(|s| s < 0) {
        return Err(InputError::invalid("step", "step must be a non-negative integer").into());
    }
    let end = crate::record::EndRecord {
        status: body.status,
        step: body.step.map(|s| s as u64),
    };
    let (status, step) = ingest::parse_end(&end)?;
    let run = state.store.finish_run(id, status, step).await?;
    Ok(Json(RunJson::new(&state, run)).into_response())
}

async fn heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let run = state.store.heartbeat(run_id(&id)?).await?;
    Ok(Json(json!({ "id": run.id, "heartbeat_at": run.heartbeat_at })).into_response())
}

async fn list_series(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = run_id(&id)?;
    require_run(&state, id).await?;
    let series = state.store.series(id).await?;
    Ok(Json(json!({ "series": series })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScalarQuery {
    key: String,
    max_points: Option<usize>,
    from_step: Option<u64>,
    to_step: Option<u64>,
}

/// One series in columns. Values use the record format's non-finite strings.
#[derive(Serialize)]
struct ScalarColumns {
    key: String,
    /// Points stored in the requested step range.
    total: usize,
    downsampled: bool,
    steps: Vec<u64>,
    values: Vec<Value>,
    times: Vec<Option<f64>>,
}

async fn read_scalars(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<ScalarQuery>,
) -> Result<Response, AppError> {
    let id = run_id(&id)?;
    if q.max_points == Some(0) {
        return Err(AppError::bad_request(
            "invalid_query",
            "max_points".to_string(),
            "max_points must be at least 1",
        ));
    }
    require_run(&state, id).await?;
    let missing = || AppError::NotFound(format!("run {id} has no series {:?}", q.key));
    let (total, points) = match q.max_points {
        Some(n) => {
            let s = state
                .store
                .downsampled(id, &q.key, q.from_step, q.to_step, n)
                .await?
                .ok_or_else(missing)?;
            (s.total, s.points)
        }
        None => {
            let points = state
                .store
                .points(id, &q.key, q.from_step, q.to_step)
                .await?
                .ok_or_else(missing)?;
            (points.len(), points)
        }
    };
    let cols = ScalarColumns {
        key: q.key,
        total,
        downsampled: points.len() < total,
        steps: points.iter().map(|p| p.step).collect(),
        values: points.iter().map(|p| Value(p.value)).collect(),
        times: points.iter().map(|p| p.time).collect(),
    };
    let body = serde_json::to_vec(&cols).expect("columns serialise");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistogramQuery {
    key: Option<String>,
}

async fn read_histograms(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<HistogramQuery>,
) -> Result<Response, AppError> {
    let id = run_id(&id)?;
    require_run(&state, id).await?;
    match q.key {
        None => Ok(
            Json(json!({ "histograms": state.store.histogram_keys(id).await? })).into_response(),
        ),
        Some(key) => {
            let hs = state.store.histograms(id, Some(&key)).await?;
            if hs.is_empty() {
                return Err(AppError::NotFound(format!(
                    "run {id} has no histogram {key:?}"
                )));
            }
            Ok(Json(json!({ "key": key, "histograms": hs })).into_response())
        }
    }
}

async fn read_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = run_id(&id)?;
    require_run(&state, id).await?;
    let model = state
        .store
        .model(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("run {id} has no model summary")))?;
    Ok(Json(model).into_response())
}

async fn read_datasets(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = run_id(&id)?;
    require_run(&state, id).await?;
    Ok(Json(json!({ "datasets": state.store.datasets(id).await? })).into_response())
}

/// The run as an NDJSON recording.
async fn export(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id = run_id(&id)?;
    let records = state.store.export(id).await?;
    let body = crate::record::to_ndjson(&records);
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response())
}

async fn require_run(state: &AppState, id: Uuid) -> Result<(), AppError> {
    match state.store.get_run(id).await? {
        Some(_) => Ok(()),
        None => Err(AppError::NotFound(format!("no run {id}"))),
    }
}
