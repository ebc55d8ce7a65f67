//! `/api/v1`: findings, and the operator-only webhook endpoints.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::alerts::{self, Format};
use crate::http::extract::query_word;
use crate::http::{Admin, AppError, AppState, JsonBody, Query, RunId};
use crate::ingest::InputError;
use crate::model::{FindingStatus, Severity};
use crate::store::webhooks::NewWebhook;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/runs/{id}/findings", get(run_findings))
        .route("/api/v1/findings", get(open_findings))
        .route("/api/v1/webhooks", get(list_webhooks).post(add_webhook))
        .route("/api/v1/webhooks/{id}", delete(remove_webhook))
        .route("/api/v1/alerts", get(list_alerts))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunFindingsQuery {
    status: Option<String>,
}

/// `open`, `resolved`, or `all` (or none): every finding.
fn parse_status(s: Option<&str>) -> Result<Option<FindingStatus>, AppError> {
    match s {
        None | Some("all") => Ok(None),
        Some(s) => query_word("status", s).map(Some).map_err(|_| {
            AppError::bad_request(
                "invalid_query",
                "status".to_string(),
                format!("status {s:?} is not one of open, resolved, all"),
            )
        }),
    }
}

/// The findings of a run and the state of its diagnosis.
async fn run_findings(
    State(state): State<AppState>,
    RunId(id): RunId,
    Query(q): Query<RunFindingsQuery>,
) -> Result<Response, AppError> {
    let status = parse_status(q.status.as_deref())?;
    let run = state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no run {id}")))?;
    let diagnosis = state.store.diagnosis_state(id).await?;
    let findings = state.store.findings(id, status).await?;
    let up_to_date = diagnosis
        .as_ref()
        .is_some_and(|d| d.diagnosed_version >= run.data_version);
    Ok(Json(json!({
        "run_id": id,
        "data_version": run.data_version,
        "diagnosis": diagnosis,
        "up_to_date": up_to_date,
        "findings": findings,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenFindingsQuery {
    project: Option<String>,
    min_severity: Option<String>,
}

/// Open findings across a project (or all projects), worst first.
async fn open_findings(
    State(state): State<AppState>,
    Query(q): Query<OpenFindingsQuery>,
) -> Result<Response, AppError> {
    let min = match q.min_severity.as_deref() {
        None => Severity::Warning,
        Some(s) => query_word("min_severity", s)?,
    };
    let findings = state.store.open_findings(q.project.as_deref(), min).await?;
    Ok(Json(json!({ "findings": findings })).into_response())
}

// Webhook URLs are set only by an operator: these endpoints take the
// `Admin` extractor (the admin token, `TRAINLENS_ADMIN_TOKEN`) and are off without one.

async fn list_webhooks(_: Admin, State(state): State<AppState>) -> Result<Response, AppError> {
    Ok(Json(json!({ "webhooks": state.store.webhooks().await? })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddWebhook {
    url: String,
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    min_severity: Option<String>,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default)]
    project: Option<String>,
}

async fn add_webhook(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(body): JsonBody<AddWebhook>,
) -> Result<Response, AppError> {
    let hook = new_webhook(
        body.url,
        body.format.as_deref(),
        body.min_severity.as_deref(),
        body.secret,
        body.project,
    )?;
    let hook = state.store.add_webhook(&hook).await?;
    Ok((StatusCode::CREATED, Json(hook)).into_response())
}

/// Validates what an operator gives for a webhook (API and CLI).
pub fn new_webhook(
    url: String,
    format: Option<&str>,
    min_severity: Option<&str>,
    secret: Option<String>,
    project: Option<String>,
) -> Result<NewWebhook, InputError> {
    alerts::validate_url(&url).map_err(|m| InputError::invalid("url", m))?;
    let format = match format {
        None => Format::Json,
        Some(f) => f.parse().map_err(|e: crate::model::ParseWordError| {
            InputError::invalid("format", e.to_string())
        })?,
    };
    let min_severity = match min_severity {
        None => Severity::Warning,
        Some(s) => s.parse().map_err(|e: crate::model::ParseWordError| {
            InputError::invalid("min_severity", e.to_string())
        })?,
    };
    if secret.as_deref().is_some_and(str::is_empty) {
        return Err(InputError::invalid("secret", "secret must not be empty"));
    }
    if let Some(p) = &project {
        crate::ingest::validate_name("project", p)?;
    }
    Ok(NewWebhook {
        url,
        format,
        min_severity,
        secret,
        project,
    })
}

async fn remove_webhook(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    let id: i64 = id.parse().map_err(|_| {
        AppError::bad_request(
            "invalid_id",
            "id".to_string(),
            format!("{id:?} is not a webhook id"),
        )
    })?;
    if !state.store.remove_webhook(id).await? {
        return Err(AppError::NotFound(format!("no webhook {id}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn list_alerts(_: Admin, State(state): State<AppState>) -> Result<Response, AppError> {
    Ok(Json(json!({ "alerts": state.store.deliveries().await? })).into_response())
}
