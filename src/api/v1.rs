//! `/api/v1`: create and list runs, ingest records, read them back.

use std::io::Write as _;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use crate::csv_export;
use crate::diagnostics::predictions;
use crate::http::extract::{idempotency_key, query_word};
use crate::http::{AppError, AppState, Body, JsonBody, Query, RunId};
use crate::ingest::{self, InputError, Limits, RunLine};
use crate::model::{Batch, IngestOutcome, NewRun, Run, RunFilter, RunStatus};
use crate::record::{RunRecord, Value};
use crate::store::records::StepKind;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/projects", get(list_projects))
        .route("/api/v1/projects/{name}/runs.csv", get(project_runs_csv))
        .route("/api/v1/runs", post(create_run).get(list_runs))
        .route("/api/v1/import", post(import))
        .route("/api/v1/runs/{id}", get(get_run))
        .route("/api/v1/runs/{id}/records", ingest_with(parse_records))
        .route(
            "/api/v1/runs/{id}/scalars",
            ingest_with(parse_scalars).get(read_scalars),
        )
        .route("/api/v1/runs/{id}/series", get(list_series))
        .route("/api/v1/runs/{id}/histograms", get(read_histograms))
        .route("/api/v1/runs/{id}/model", get(read_model))
        .route("/api/v1/runs/{id}/datasets", get(read_datasets))
        .route(
            "/api/v1/runs/{id}/images",
            step_records::<StepRecordQuery>(StepKind::Image),
        )
        .route(
            "/api/v1/runs/{id}/tensors",
            step_records::<StepRecordQuery>(StepKind::Tensor),
        )
        .route(
            "/api/v1/runs/{id}/predictions",
            step_records::<PredictionsQuery>(StepKind::Predictions),
        )
        .route(
            "/api/v1/runs/{id}/predictions/analysis",
            get(predictions_analysis),
        )
        .route("/api/v1/runs/{id}/export", get(export))
        .route("/api/v1/runs/{id}/finish", post(finish_run))
        .route("/api/v1/runs/{id}/heartbeat", post(heartbeat))
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
    #[serde(default)]
    run_key: Option<String>,
}

/// 201 with a new run; 200 with the existing one when the project already
/// has a run with this `run_key`.
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
        run_key: body.run_key,
    };
    ingest::validate_run(&record, &state.limits)?;
    let done = state.store.open_run(&NewRun::from(record)).await?;
    Ok(created_or_found(&state, done))
}

fn created_or_found(state: &AppState, done: crate::store::runs::Created) -> Response {
    let status = if done.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, Json(RunJson::new(state, done.run))).into_response()
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
        .map(|s| query_word::<RunStatus>("status", &s))
        .transpose()?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let offset = q.offset.unwrap_or(0);
    let filter = RunFilter {
        project: q.project,
        status,
        limit: limit + 1,
        offset,
        with_config: true,
    };
    let mut runs = state.store.list_runs(&filter).await?;
    let more = runs.len() > limit as usize;
    runs.truncate(limit as usize);
    let runs: Vec<RunJson> = runs.into_iter().map(|r| RunJson::new(&state, r)).collect();
    let next_offset = more.then_some(offset + limit);
    Ok(Json(json!({ "runs": runs, "next_offset": next_offset })).into_response())
}

async fn get_run(State(state): State<AppState>, RunId(id): RunId) -> Result<Response, AppError> {
    let run = state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no run {id}")))?;
    Ok(Json(RunJson::new(&state, run)).into_response())
}

/// How an ingest endpoint reads its body into a batch.
type ParseBatch = fn(&[u8], &Limits) -> Result<Batch, InputError>;

/// `POST` of a batch into a run: the body read with `parse`, stored once
/// per `Idempotency-Key`.
fn ingest_with(parse: ParseBatch) -> MethodRouter<AppState> {
    post(
        move |State(state): State<AppState>,
              RunId(id): RunId,
              headers: HeaderMap,
              Body(body): Body| async move {
            let key = idempotency_key(&headers)?;
            let batch = parse(&body, &state.limits)?;
            let outcome: IngestOutcome = state.store.ingest(id, &batch, key.as_deref()).await?;
            Ok::<_, AppError>(Json(outcome))
        },
    )
}

/// Records in the record format, without a run line.
fn parse_records(body: &[u8], lim: &Limits) -> Result<Batch, InputError> {
    Ok(ingest::parse_ndjson_within(body, RunLine::Forbidden, lim)?.batch)
}

/// Scalars in columns.
fn parse_scalars(body: &[u8], _: &Limits) -> Result<Batch, InputError> {
    ingest::parse_columnar(body)
}

async fn import(State(state): State<AppState>, Body(body): Body) -> Result<Response, AppError> {
    let rec = ingest::parse_ndjson_within(&body, RunLine::Required, &state.limits)?;
    let run = rec.run.expect("parse_ndjson(Required) returns a run");
    let done = state
        .store
        .import_run(&NewRun::from(run), &rec.batch)
        .await?;
    Ok(created_or_found(&state, done))
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
    RunId(id): RunId,
    JsonBody(body): JsonBody<Finish>,
) -> Result<Response, AppError> {
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

async fn heartbeat(State(state): State<AppState>, RunId(id): RunId) -> Result<Response, AppError> {
    let run = state.store.heartbeat(id).await?;
    Ok(Json(json!({ "id": run.id, "heartbeat_at": run.heartbeat_at })).into_response())
}

async fn list_series(
    State(state): State<AppState>,
    RunId(id): RunId,
) -> Result<Response, AppError> {
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
    RunId(id): RunId,
    Query(q): Query<ScalarQuery>,
) -> Result<Response, AppError> {
    if q.max_points == Some(0) {
        return Err(AppError::bad_request(
            "invalid_query",
            "max_points".to_string(),
            "max_points must be at least 1",
        ));
    }
    require_run(&state, id).await?;
    let missing = || AppError::NotFound(format!("run {id} has no series {:?}", q.key));
    let s = match q.max_points {
        Some(n) => state
            .store
            .downsampled(id, &q.key, q.from_step, q.to_step, n)
            .await?
            .ok_or_else(missing)?,
        None => {
            let range = state
                .store
                .stored_range(id, &q.key, q.from_step, q.to_step)
                .await?
                .ok_or_else(missing)?;
            if range.total > STREAM_READS_ABOVE_POINTS {
                return Ok(stream_columns(q.key, range));
            }
            let points = range.points()?;
            crate::model::Sampled {
                total: points.len(),
                points,
            }
        }
    };
    let cols = ScalarColumns {
        key: q.key,
        total: s.total,
        downsampled: s.points.len() < s.total,
        steps: s.points.iter().map(|p| p.step).collect(),
        values: s.points.iter().map(|p| Value(p.value)).collect(),
        times: s.points.iter().map(|p| p.time).collect(),
    };
    let body = serde_json::to_vec(&cols).expect("columns serialise");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

/// Full reads of more points than this stream their answer
/// ([`stream_columns`]); smaller ones build it at once, which is faster and
/// holds at most a few MiB.
pub const STREAM_READS_ABOVE_POINTS: usize = 1 << 18;

/// Bytes of JSON sent at a time by a streamed read.
const STREAM_PIECE_BYTES: usize = 64 * 1024;

/// A full read as [`ScalarColumns`] JSON, byte for byte, written as it goes:
/// the steps, values and times each decode the stored chunks afresh, so the
/// server holds the compressed range and one decoded chunk, never the
/// points or the body. An error after the first byte cuts the body off.
fn stream_columns(key: String, range: crate::store::scalars::StoredRange) -> Response {
    streamed("application/json", "scalar read", move |out| async move {
        let mut buf = Vec::with_capacity(STREAM_PIECE_BYTES + 64);
        buf.extend_from_slice(b"{\"key\":");
        serde_json::to_writer(&mut buf, &key)?;
        write!(buf, ",\"total\":{},\"downsampled\":false", range.total)?;
        for field in ["steps", "values", "times"] {
            write!(buf, ",\"{field}\":[")?;
            let mut first = true;
            for points in range.chunks() {
                for p in points? {
                    if !first {
                        buf.push(b',');
                    }
                    first = false;
                    match field {
                        "steps" => write!(buf, "{}", p.step)?,
                        "values" => serde_json::to_writer(&mut buf, &Value(p.value))?,
                        _ => serde_json::to_writer(&mut buf, &p.time)?,
                    }
                }
                if buf.len() >= STREAM_PIECE_BYTES
                    && !out.send(std::mem::take(&mut buf).into()).await
                {
                    return Ok(());
                }
            }
            buf.push(b']');
        }
        buf.push(b'}');
        out.send(buf.into()).await;
        Ok(())
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistogramQuery {
    key: Option<String>,
}

async fn read_histograms(
    State(state): State<AppState>,
    RunId(id): RunId,
    Query(q): Query<HistogramQuery>,
) -> Result<Response, AppError> {
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

async fn read_model(State(state): State<AppState>, RunId(id): RunId) -> Result<Response, AppError> {
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
    RunId(id): RunId,
) -> Result<Response, AppError> {
    require_run(&state, id).await?;
    Ok(Json(json!({ "datasets": state.store.datasets(id).await? })).into_response())
}

#[derive(Deserialize, Default, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum ExportFormat {
    #[default]
    Ndjson,
    Csv,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportQuery {
    #[serde(default)]
    format: ExportFormat,
}

/// The run in the record format (`format=ndjson`, the default), or its
/// scalars as CSV in long form (`format=csv`: key, step, time, value),
/// streamed page by page (see `Store::export_pages`): memory stays bounded
/// whatever the run's size. An error after the first byte ends the stream
/// early, so the client sees a cut-off body instead of a complete-looking
/// one.
async fn export(
    State(state): State<AppState>,
    RunId(id): RunId,
    Query(q): Query<ExportQuery>,
) -> Result<Response, AppError> {
    require_run(&state, id).await?;
    let (content_type, header, page_text): (_, _, fn(&[crate::record::Record]) -> String) =
        match q.format {
            ExportFormat::Ndjson => ("application/x-ndjson", "", crate::record::to_ndjson),
            ExportFormat::Csv => (
                "text/csv; charset=utf-8",
                csv_export::SCALARS_HEADER,
                csv_export::scalar_rows,
            ),
        };
    let store = state.store.clone();
    let mut resp = streamed(content_type, "export", move |out| async move {
        if !header.is_empty() && !out.send(header.into()).await {
            return Ok(());
        }
        let mut pages = store.export_pages(id).await?;
        while let Some(page) = pages.next_page().await? {
            let text = page_text(&page);
            if !text.is_empty() && !out.send(text.into()).await {
                break;
            }
        }
        Ok(())
    });
    if q.format == ExportFormat::Csv {
        attachment(&mut resp, &format!("run-{id}.csv"));
    }
    Ok(resp)
}

/// Marks a response as a download named `file` (ASCII, no quotes).
fn attachment(resp: &mut Response, file: &str) {
    let value = format!("attachment; filename=\"{file}\"");
    if let Ok(v) = header::HeaderValue::from_str(&value) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
}

/// A project's runs as a CSV table: identity, status, config and the last
/// value of every series (see [`csv_export::runs_table`]).
async fn project_runs_csv(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Response, AppError> {
    let runs = state.store.runs_with_series(&name).await?;
    if runs.is_empty()
        && !state
            .store
            .list_projects()
            .await?
            .iter()
            .any(|p| p.name == name)
    {
        return Err(AppError::NotFound(format!("no project {name:?}")));
    }
    let mut resp = (
        [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
        csv_export::runs_table(&runs),
    )
        .into_response();
    let file: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    attachment(&mut resp, &format!("{file}-runs.csv"));
    Ok(resp)
}

/// Where a streamed answer writes its pieces.
struct Pieces(tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Pieces {
    /// Sends a piece; false when the client went away (stop producing).
    async fn send(&self, piece: Bytes) -> bool {
        self.0.send(Ok(piece)).await.is_ok()
    }
}

/// A response whose body `produce` writes a piece at a time from a task of
/// its own, so the server holds a piece or two, never the body. An error
/// after the first byte is logged and cuts the body off, so the client sees
/// a broken answer instead of a complete-looking one.
fn streamed<F, Fut>(content_type: &'static str, what: &'static str, produce: F) -> Response
where
    F: FnOnce(Pieces) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(2);
    tokio::spawn(async move {
        if let Err(e) = produce(Pieces(tx.clone())).await {
            tracing::error!(error = %e, "{what} failed mid-stream");
            let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        [(header::CONTENT_TYPE, content_type)],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StepRecordQuery {
    key: Option<String>,
    from_step: Option<u64>,
    to_step: Option<u64>,
    limit: Option<u32>,
}

/// Image, tensor and predictions records (record format v2): without `key`
/// the keys (for predictions: the splits) with counts and step ranges; with
/// it, that key's records by step (at most `limit`, default 100, ≤ 1000).
async fn read_step_records(
    state: &AppState,
    id: Uuid,
    kind: StepKind,
    q: StepRecordQuery,
) -> Result<Response, AppError> {
    require_run(state, id).await?;
    let field = if kind == StepKind::Predictions {
        "splits"
    } else {
        "keys"
    };
    let Some(key) = q.key else {
        let keys = state.store.step_record_keys(id, kind).await?;
        return Ok(Json(json!({ field: keys })).into_response());
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let records = state
        .store
        .step_records(id, kind, &key, q.from_step, q.to_step, limit)
        .await?;
    if records.is_empty() && q.from_step.is_none() && q.to_step.is_none() {
        return Err(AppError::NotFound(format!(
            "run {id} has no {} {key:?}",
            kind.as_str()
        )));
    }
    Ok(Json(json!({ "key": key, "records": records })).into_response())
}

/// `GET` of a run's step records of `kind` ([`read_step_records`]), asked
/// for with the query `Q`.
fn step_records<Q>(kind: StepKind) -> MethodRouter<AppState>
where
    Q: DeserializeOwned + Into<StepRecordQuery> + Send + 'static,
{
    get(
        move |State(state): State<AppState>, RunId(id): RunId, Query(q): Query<Q>| async move {
            read_step_records(&state, id, kind, q.into()).await
        },
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictionsQuery {
    split: Option<String>,
    from_step: Option<u64>,
    to_step: Option<u64>,
    limit: Option<u32>,
}

/// Predictions are asked for by split.
impl From<PredictionsQuery> for StepRecordQuery {
    fn from(q: PredictionsQuery) -> Self {
        StepRecordQuery {
            key: q.split,
            from_step: q.from_step,
            to_step: q.to_step,
            limit: q.limit,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnalysisQuery {
    split: Option<String>,
    step: Option<u64>,
    /// Most suspects returned (default 100, at most 20,000).
    suspects: Option<usize>,
}

/// The analysis of one predictions record (`diagnostics::predictions`):
/// confusion matrix, per-class precision and recall, confident learning's
/// label-error estimate and suspects. Defaults: the validation split
/// ([`predictions::preferred_split`]), its latest step, 100 suspects.
async fn predictions_analysis(
    State(state): State<AppState>,
    RunId(id): RunId,
    Query(q): Query<AnalysisQuery>,
) -> Result<Response, AppError> {
    require_run(&state, id).await?;
    let splits: Vec<String> = state
        .store
        .step_record_keys(id, StepKind::Predictions)
        .await?
        .into_iter()
        .map(|k| k.key)
        .collect();
    let split = match q.split {
        Some(s) => s,
        None => match predictions::preferred_split(&splits) {
            Some(s) => s.to_string(),
            None => return Err(AppError::NotFound(format!("run {id} has no predictions"))),
        },
    };
    let Some(record) = state.store.predictions_at(id, &split, q.step).await? else {
        let at = q.step.map(|s| format!(" at step {s}")).unwrap_or_default();
        return Err(AppError::NotFound(format!(
            "run {id} has no predictions of split {split:?}{at}"
        )));
    };
    let mut analysis = predictions::analyse(&record);
    let total = analysis.suspects.len();
    analysis
        .suspects
        .truncate(q.suspects.unwrap_or(100).min(20_000));
    Ok(Json(json!({
        "splits": splits,
        "suspects_total": total,
        "analysis": analysis,
    }))
    .into_response())
}

async fn require_run(state: &AppState, id: Uuid) -> Result<(), AppError> {
    match state.store.get_run(id).await? {
        Some(_) => Ok(()),
        None => Err(AppError::NotFound(format!("no run {id}"))),
    }
}
