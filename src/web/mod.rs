//! Server-rendered pages: the runs list and a run's page with its findings.
//! Handlers load, shape a view model and render an askama template (which
//! escapes every value).

use askama::Template;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

mod debug;

use crate::charts::svg::{self, Line, Marker};
use crate::diagnostics::names::{Role, classify};
use crate::http::{AppError, AppState, PageError, Query, RunId};
use crate::model::{FindingStatus, Run, RunFilter, SeriesInfo};
use crate::store::findings::StoredFinding;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/static/style.css", get(stylesheet))
}

fn render(t: &impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render().map_err(AppError::from)?).into_response())
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../static/style.css"),
    )
}

/// Formats a unix time as `YYYY-MM-DD HH:MM UTC`.
pub fn fmt_time(t: f64) -> String {
    let secs = t as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        crate::record::nonfinite_name(v).to_string()
    } else if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{:.4}", v)
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

struct RunRow {
    id: String,
    name: String,
    project: String,
    status: &'static str,
    created: String,
    worst: Option<&'static str>,
    open: usize,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    project: Option<String>,
    projects: Vec<(String, i64)>,
    runs: Vec<RunRow>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    project: Option<String>,
}

async fn runs_page(
    State(state): State<AppState>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, PageError> {
    let filter = RunFilter {
        project: q.project.clone(),
        status: None,
        limit: 200,
        offset: 0,
        with_config: false,
    };
    let runs = state.store.list_runs(&filter).await?;
    let open = state
        .store
        .open_findings(q.project.as_deref(), crate::diagnostics::Severity::Warning)
        .await?;
    let rows = runs
        .into_iter()
        .map(|r| {
            let mine: Vec<&StoredFinding> = open.iter().filter(|f| f.run_id == r.id).collect();
            RunRow {
                id: r.id.to_string(),
                worst: mine
                    .iter()
                    .map(|f| f.finding.severity)
                    .max()
                    .map(|s| s.as_str()),
                open: mine.len(),
                name: r.name,
                project: r.project,
                status: r.status.as_str(),
                created: fmt_time(r.created_at),
            }
        })
        .collect();
    let projects = state
        .store
        .list_projects()
        .await?
        .into_iter()
        .map(|p| (p.name, p.runs))
        .collect();
    render(&RunsPage {
        project: q.project,
        projects,
        runs: rows,
    })
}

struct FindingView {
    kind: &'static str,
    severity: &'static str,
    onset: Option<u64>,
    title: String,
    summary: String,
    layer: Option<String>,
    series: Vec<String>,
    metrics: Vec<(String, String)>,
    cause: String,
    fixes: Vec<String>,
}

impl From<&StoredFinding> for FindingView {
    fn from(f: &StoredFinding) -> Self {
        let e = &f.finding.evidence;
        FindingView {
            kind: f.finding.kind.as_str(),
            severity: f.finding.severity.as_str(),
            onset: f.finding.onset_step,
            title: f.finding.title.clone(),
            summary: e.summary.clone(),
            layer: e.layer.clone(),
            series: e.series.clone(),
            metrics: e
                .metrics
                .iter()
                .map(|(k, v)| (k.clone(), fmt_value(*v)))
                .collect(),
            cause: f.finding.cause.clone(),
            fixes: f.finding.fixes.clone(),
        }
    }
}

struct SeriesRow {
    key: String,
    count: i64,
    last_step: String,
    last_value: String,
}

impl From<SeriesInfo> for SeriesRow {
    fn from(s: SeriesInfo) -> Self {
        SeriesRow {
            key: s.key,
            count: s.count,
            last_step: s.last_step.map_or_else(String::new, |v| v.to_string()),
            last_value: s.last_value.map_or_else(String::new, |v| fmt_value(v.0)),
        }
    }
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    run: Run,
    created: String,
    updated: String,
    config: String,
    open: Vec<FindingView>,
    info: Vec<FindingView>,
    resolved: Vec<FindingView>,
    notes: Vec<String>,
    diagnosed: Option<String>,
    up_to_date: bool,
    series: Vec<SeriesRow>,
    /// SVG markup made by `charts::svg` (its text is escaped there).
    charts: Vec<String>,
    /// Gradient flow, updates, units, distributions (SVG escaped in `charts`).
    debug: debug::Debugging,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunQuery {
    /// The histogram key of the distribution charts.
    hist: Option<String>,
}

/// The preferred key of each role among a run's series.
fn key_for(series: &[SeriesInfo], role: Role) -> Option<&str> {
    series
        .iter()
        .filter_map(|s| classify(&s.key).map(|m| (m, s.key.as_str())))
        .filter(|(m, _)| m.role == role && m.layer.is_none())
        .min_by_key(|(m, _)| m.rank)
        .map(|(_, k)| k)
}

/// Points per curve on a page: about one per horizontal pixel.
const CHART_POINTS: usize = 800;

/// Loss and accuracy charts, with the onsets of the open findings marked
/// (per-layer charts are in [`debug`]).
async fn run_charts(
    state: &AppState,
    run: uuid::Uuid,
    series: &[SeriesInfo],
    markers: &[Marker],
) -> Result<Vec<String>, PageError> {
    let mut plans: Vec<(&str, Vec<String>)> = Vec::new();
    for (title, roles) in [
        ("Loss", [Role::TrainLoss, Role::ValLoss]),
        ("Accuracy", [Role::TrainAcc, Role::ValAcc]),
    ] {
        let keys: Vec<String> = roles
            .iter()
            .filter_map(|r| key_for(series, *r))
            .map(str::to_string)
            .collect();
        plans.push((title, keys));
    }
    let mut charts = Vec::new();
    for (title, keys) in plans {
        let mut lines = Vec::new();
        for key in keys {
            if let Some(s) = state
                .store
                .downsampled(run, &key, None, None, CHART_POINTS)
                .await?
            {
                lines.push(Line {
                    label: key,
                    points: s.points.iter().map(|p| (p.step, p.value)).collect(),
                });
            }
        }
        if let Some(chart) = svg::line_chart(title, &lines, markers, (900, 300)) {
            charts.push(chart);
        }
    }
    Ok(charts)
}

async fn run_page(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunQuery>,
) -> Result<Response, PageError> {
    let RunId(id) = RunId::parse(&id)?;
    let run = state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no run {id}")))?;
    let findings = state.store.findings(id, None).await?;
    let diagnosis = state.store.diagnosis_state(id).await?;
    let is_open = |f: &&StoredFinding| f.status == FindingStatus::Open;
    let markers: Vec<Marker> = findings
        .iter()
        .filter(is_open)
        .filter(|f| f.finding.severity.is_raised())
        .filter_map(|f| {
            Some(Marker {
                step: f.finding.onset_step?,
                label: f.finding.kind.as_str().to_string(),
            })
        })
        .collect();
    let series = state.store.series(id).await?;
    let (charts, debug) = tokio::try_join!(
        run_charts(&state, id, &series, &markers),
        debug::debugging(&state, id, &series, &markers, q.hist.as_deref()),
    )?;
    let page = RunPage {
        created: fmt_time(run.created_at),
        updated: fmt_time(run.updated_at),
        config: run
            .config
            .as_ref()
            .and_then(|c| serde_json::to_string_pretty(&c.parse()).ok())
            .unwrap_or_default(),
        open: findings
            .iter()
            .filter(is_open)
            .filter(|f| f.finding.severity.is_raised())
            .map(Into::into)
            .collect(),
        info: findings
            .iter()
            .filter(is_open)
            .filter(|f| !f.finding.severity.is_raised())
            .map(Into::into)
            .collect(),
        resolved: findings
            .iter()
            .filter(|f| f.status == FindingStatus::Resolved)
            .map(Into::into)
            .collect(),
        notes: diagnosis
            .as_ref()
            .map(|d| d.notes.clone())
            .unwrap_or_default(),
        diagnosed: diagnosis.as_ref().map(|d| fmt_time(d.diagnosed_at)),
        up_to_date: diagnosis
            .as_ref()
            .is_some_and(|d| d.diagnosed_version >= run.data_version),
        series: series.into_iter().map(Into::into).collect(),
        charts,
        debug,
        run,
    };
    render(&page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_values_format() {
        assert_eq!(fmt_time(0.0), "1970-01-01 00:00 UTC");
        assert_eq!(fmt_time(1_700_000_000.0), "2023-11-14 22:13 UTC");
        assert_eq!(fmt_value(f64::NAN), "NaN");
        assert_eq!(fmt_value(0.5), "0.5");
        assert_eq!(fmt_value(8.47e30), "8.470e30");
        assert_eq!(fmt_value(2.0), "2");
    }
}
