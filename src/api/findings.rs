//! `/api/v1`: findings, and the operator-only webhook endpoints.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::error::AppError;
use super::v1::{JsonBody, Query, run_id};
use crate::alerts::{self, Format};
use crate::app::AppState;
use crate::diagnostics::Severity;
use crate::ingest::InputError;
use crate::store::diagnosis::{FindingStatus, NewWebhook};

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

fn parse_status(s: Option<&str>) -> Result<Option<FindingStatus>, AppError> {
    match s {
        None | Some("all") => Ok(None),
        Some("open") => Ok(Some(FindingStatus::Open)),
        Some("resolved") => Ok(Some(FindingStatus::Resolved)),
        Some(other) => Err(AppError::bad_request(
            "invalid_query",
            "status".to_string(),
            format!("status {other:?} is not one of open, resolved, all"),
        )),
    }
}

fn parse_min_severity(s: Option<&str>, field: &str) -> Result<Severity, AppError> {
    match s {
        None => Ok(Severity::Warning),
        Some(s) => alerts::parse_severity(s).ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                field.to_string(),
                format!("{s:?} is not one of info, warning, error, critical"),
            )
        }),
    }
}

/// The findings of a run and the state of its diagnosis.
async fn run_findings(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunFindingsQuery>,
) -> Result<Response, AppError> {
    let id = run_id(&id)?;
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
    let min = parse_min_severity(q.min_severity.as_deref(), "min_severity")?;
    let findings = state.store.open_findings(q.project.as_deref(), min).await?;
    Ok(Json(json!({ "findings": findings })).into_response())
}

/// Webhook URLs are set only by an operator: these endpoints need the admin
/// token (`TRAINLENS_ADMIN_TOKEN`) and are off without one.
fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), AppError> {
    let Some(token) = &state.admin_token else {
        return Err(AppError::Forbidden(
            "the webhook API is off: start the server with TRAINLENS_ADMIN_TOKEN set, or use `trainlens webhook`".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let ok = given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes()));
    if ok {
        Ok(())
    } else {
        Err(AppError::Unauthorized(
            "send `Authorization: Bearer <admin token>`".into(),
        ))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn list_webhooks(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    require_admin(&state, &headers)?;
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
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<AddWebhook>,
) -> Result<Response, AppError> {
    require_admin(&state, &headers)?;
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
        Some(f) => Format::parse(f).ok_or_else(|| {
            InputError::invalid(
                "format",
                format!("{f:?} is not one of slack, discord, json"),
            )
        })?,
    };
    let min_severity = match min_severity {
        None => Severity::Warning,
        Some(s) => alerts::parse_severity(s).ok_or_else(|| {
            InputError::invalid(
                "min_severity",
                format!("{s:?} is not one of info, warning, error, critical"),
            )
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
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, AppError> {
    require_admin(&state, &headers)?;
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

async fn list_alerts(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    require_admin(&state, &headers)?;
    Ok(Json(json!({ "alerts": state.store.deliveries().await? })).into_response())
}
