//! Server-rendered pages: the runs list and a run's page with its findings.
//! Handlers load, shape a view model and render an askama template (which
//! escapes every value).

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use serde::Deserialize;

use crate::charts::sparkline;
mod charts;
mod compare;
mod debug;
pub mod live;
mod predictions;
mod views;

use crate::diagnostics::Kind;
use crate::diagnostics::architecture::is_hint;
use crate::diagnostics::names::{Role, classify};
use crate::http::{AppError, AppState, PageError, PageRunId, Query};
use crate::model::{FindingStatus, Health, Run, RunSort, RunStatus, RunTableQuery, SeriesInfo};
use crate::store::findings::StoredFinding;
use charts::{ChartId, ChartView, PageCtx, View};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(runs_page))
        .route("/runs/{id}", get(run_page))
        .route("/runs/{id}/charts/{file}", get(charts::download))
        .route(
            "/static/style.css",
            asset("text/css", include_str!("../../static/style.css")),
        )
        .route(
            "/static/charts.js",
            asset("text/javascript", include_str!("../../static/charts.js")),
        )
        .merge(views::router())
        .merge(live::router())
        .merge(compare::router())
}

/// `GET` of a file built into the binary, `body`, served as `content_type`
/// and cached for an hour.
fn asset(content_type: &'static str, body: &'static str) -> MethodRouter<AppState> {
    get(move || async move {
        (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "max-age=3600"),
            ],
            body,
        )
    })
}

fn render(t: &impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render().map_err(AppError::from)?).into_response())
}

/// The content type of a download by its extension: a chart's SVG, a CSV
/// of what it draws, a picture's PNG.
pub(crate) fn file_type(ext: &str) -> Option<&'static str> {
    match ext {
        "svg" => Some("image/svg+xml; charset=utf-8"),
        "csv" => Some("text/csv; charset=utf-8"),
        "png" => Some("image/png"),
        _ => None,
    }
}

/// A download of `body`, saved as `filename` (ASCII letters, digits and
/// `-_.`: nothing to quote) and typed by its extension.
pub(crate) fn attachment(filename: &str, body: impl IntoResponse) -> Response {
    let ext = filename.rsplit_once('.').map_or("", |(_, e)| e);
    (
        [
            (
                header::CONTENT_TYPE,
                file_type(ext).unwrap_or("application/octet-stream"),
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        [(
            header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{filename}\""),
        )],
        body,
    )
        .into_response()
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

/// Runs per page of the runs table.
const PAGE_SIZE: u32 = 50;
/// Sparkline size in pixels, and points per sparkline (~ one per 2 px).
const SPARK_SIZE: (u32, u32) = (120, 24);
const SPARK_POINTS: usize = 60;

struct RunRow {
    id: String,
    name: String,
    project: String,
    tags: Vec<String>,
    status: &'static str,
    worst: Option<&'static str>,
    open: i64,
    last_step: String,
    val_loss: String,
    val_acc: String,
    /// SVG markup made by `charts::sparkline` (numbers only).
    spark: Option<String>,
    duration: String,
    started: String,
}

/// A sortable column header: its link sorts by it (again: the other way).
struct Column {
    label: &'static str,
    href: String,
    /// `▲`/`▼` on the column the table is sorted by.
    arrow: &'static str,
    class: &'static str,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct RunsPage {
    project: Option<String>,
    projects: Vec<(String, i64)>,
    runs: Vec<RunRow>,
    columns: Vec<Column>,
    total: u64,
    /// The rows shown, 1-based: `first..=last` of `total`.
    first: u64,
    last: u64,
    prev: Option<String>,
    next: Option<String>,
    /// The filters as given, for the form.
    status: String,
    health: String,
    tag: String,
    q: String,
    sort: &'static str,
    dir: &'static str,
    statuses: &'static [&'static str],
    healths: &'static [&'static str],
    /// Whether any filter is set (the empty state says so).
    filtered: bool,
    /// The table's event stream (see [`live`]).
    live: String,
}

/// The runs page's query: every field optional (a GET form sends empty
/// strings for the fields left blank).
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RunsQuery {
    project: Option<String>,
    status: Option<String>,
    health: Option<String>,
    tag: Option<String>,
    q: Option<String>,
    sort: Option<String>,
    dir: Option<String>,
    page: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

fn word<T: std::str::FromStr<Err = crate::model::ParseWordError>>(
    field: &str,
    v: &Option<String>,
) -> Result<Option<T>, AppError> {
    given(v)
        .map(|w| {
            w.parse()
                .map_err(|e: crate::model::ParseWordError| AppError::BadRequest {
                    code: "invalid_query",
                    field: Some(field.into()),
                    message: e.to_string(),
                })
        })
        .transpose()
}

/// Which way a column sorts on its first click: names and losses up,
/// the rest (worst health, latest, longest, most accurate) down.
fn default_descending(sort: RunSort) -> bool {
    !matches!(sort, RunSort::Name | RunSort::Status | RunSort::ValLoss)
}

impl RunsQuery {
    /// This query as a link to `/`, with `change` applied.
    fn href(&self, change: impl FnOnce(&mut RunsQuery)) -> String {
        let mut q = self.clone();
        change(&mut q);
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("project", &q.project),
            ("status", &q.status),
            ("health", &q.health),
            ("tag", &q.tag),
            ("q", &q.q),
            ("sort", &q.sort),
            ("dir", &q.dir),
            ("page", &q.page),
        ] {
            if let Some(v) = given(v) {
                ser.append_pair(k, v);
            }
        }
        let query = ser.finish();
        if query.is_empty() {
            "/".into()
        } else {
            format!("/?{query}")
        }
    }
}

/// `1h 02m`, `3m 20s`, `45s`.
fn fmt_duration(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m {:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h {:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

async fn runs_page(
    State(state): State<AppState>,
    Query(q): Query<RunsQuery>,
) -> Result<Response, PageError> {
    let status: Option<RunStatus> = word("status", &q.status)?;
    let health: Option<Health> = word("health", &q.health)?;
    let sort: RunSort = word("sort", &q.sort)?.unwrap_or_default();
    let descending = match given(&q.dir) {
        None => default_descending(sort),
        Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(AppError::BadRequest {
                code: "invalid_query",
                field: Some("dir".into()),
                message: format!("dir {other:?} is not one of asc, desc"),
            }
            .into());
        }
    };
    let page: u32 = match given(&q.page) {
        None => 1,
        Some(p) => p
            .parse()
            .ok()
            .filter(|p| (1..=100_000).contains(p))
            .ok_or_else(|| AppError::BadRequest {
                code: "invalid_query",
                field: Some("page".into()),
                message: format!("page {p:?} is not a number from 1 to 100000"),
            })?,
    };
    let project = given(&q.project).map(str::to_string);
    let live = live::table_events_url(project.as_deref(), crate::store::now());
    let table = state
        .store
        .run_table(&RunTableQuery {
            project: project.clone(),
            status,
            health,
            tag: given(&q.tag).map(str::to_string),
            search: given(&q.q).map(str::to_string),
            sort,
            descending,
            limit: PAGE_SIZE,
            offset: (page - 1) * PAGE_SIZE,
        })
        .await?;

    let ids: Vec<uuid::Uuid> = table.rows.iter().map(|r| r.run.id).collect();
    let series = state.store.series_of_runs(&ids).await?;
    let no_series = Vec::new();
    let series_of = |id: &uuid::Uuid| series.get(id).unwrap_or(&no_series);
    let losses: Vec<(uuid::Uuid, &str)> = ids
        .iter()
        .filter_map(|id| Some((*id, key_for(series_of(id), Role::TrainLoss)?)))
        .collect();
    let sparks = state.store.sparklines(&losses, SPARK_POINTS).await?;
    let last_of = |list: &[SeriesInfo], role| {
        key_for(list, role).map_or_else(String::new, |k| last_value(list, k))
    };
    let runs: Vec<RunRow> = table
        .rows
        .into_iter()
        .map(|row| {
            let r = row.run;
            let list = series_of(&r.id);
            RunRow {
                id: r.id.to_string(),
                worst: row.worst.map(|s| s.as_str()),
                open: row.open,
                last_step: last_step(list, r.end_step),
                val_loss: last_of(list, Role::ValLoss),
                val_acc: last_of(list, Role::ValAcc),
                spark: sparks
                    .get(&r.id)
                    .and_then(|p| sparkline::sparkline(p, SPARK_SIZE.0, SPARK_SIZE.1)),
                duration: fmt_duration(r.updated_at - r.created_at),
                started: fmt_time(r.created_at),
                name: r.name,
                project: r.project,
                tags: r.tags,
                status: r.status.as_str(),
            }
        })
        .collect();

    let current = (sort, descending);
    let columns = [
        // `wide`: left out on narrow screens (static/style.css).
        ("run", RunSort::Name, ""),
        ("status", RunSort::Status, ""),
        ("health", RunSort::Health, ""),
        ("last step", RunSort::LastStep, "num wide"),
        ("val loss", RunSort::ValLoss, "num"),
        ("val acc", RunSort::ValAcc, "num wide"),
        ("duration", RunSort::Duration, "num wide"),
        ("started", RunSort::Started, "wide"),
    ]
    .into_iter()
    .map(|(label, col, class)| {
        let desc = if current.0 == col {
            !current.1
        } else {
            default_descending(col)
        };
        Column {
            label,
            href: q.href(|q| {
                q.sort = Some(col.as_str().into());
                q.dir = Some(if desc { "desc" } else { "asc" }.into());
                q.page = None;
            }),
            arrow: match (current.0 == col, current.1) {
                (false, _) => "",
                (true, true) => "▼",
                (true, false) => "▲",
            },
            class,
        }
    })
    .collect();
    let shown = runs.len() as u64;
    let first = u64::from((page - 1) * PAGE_SIZE) + 1;
    let projects = state
        .store
        .list_projects()
        .await?
        .into_iter()
        .map(|p| (p.name, p.runs))
        .collect();
    render(&RunsPage {
        prev: (page > 1 && shown > 0).then(|| q.href(|q| q.page = Some((page - 1).to_string()))),
        next: (first - 1 + shown < table.total)
            .then(|| q.href(|q| q.page = Some((page + 1).to_string()))),
        first,
        last: first - 1 + shown,
        total: table.total,
        filtered: status.is_some()
            || health.is_some()
            || given(&q.tag).is_some()
            || given(&q.q).is_some(),
        status: status.map_or("", |s| s.as_str()).into(),
        health: health.map_or("", |h| h.as_str()).into(),
        tag: given(&q.tag).unwrap_or_default().into(),
        q: given(&q.q).unwrap_or_default().into(),
        sort: sort.as_str(),
        dir: if descending { "desc" } else { "asc" },
        statuses: RunStatus::WORDS,
        healths: Health::WORDS,
        project,
        projects,
        runs,
        columns,
        live,
    })
}

struct FindingView {
    /// The anchor and title of the chart with its evidence, when the page
    /// has it.
    chart: Option<(String, &'static str)>,
    kind: &'static str,
    severity: &'static str,
    onset: Option<u64>,
    title: String,
    summary: String,
    layer: Option<String>,
    series: Vec<String>,
    metrics: Vec<(String, String)>,
    /// The samples concerned (label errors' suspects), one line each.
    samples: Vec<String>,
    cause: String,
    /// The kind of the finding that caused this one, if any.
    caused_by: Option<&'static str>,
    fixes: Vec<String>,
    /// An info-only hint from the model record and the config.
    hint: bool,
}

impl From<&StoredFinding> for FindingView {
    fn from(f: &StoredFinding) -> Self {
        let e = &f.finding.evidence;
        FindingView {
            chart: None,
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
            samples: e
                .samples
                .iter()
                .map(|s| {
                    format!(
                        "{} {}: labelled {}, looks like {} ({:.3}; the label {}{:.3})",
                        s.split,
                        crate::diagnostics::predictions::id_text(&s.id),
                        s.label,
                        s.predicted,
                        s.confidence,
                        if s.label_prob_bound { "≤ " } else { "" },
                        s.label_prob
                    )
                })
                .collect(),
            cause: f.finding.cause.clone(),
            caused_by: f.finding.caused_by.map(|k| k.as_str()),
            fixes: f.finding.fixes.clone(),
            hint: is_hint(f.finding.kind) && !f.finding.severity.is_raised(),
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
    /// Open `architecture` / `hyperparameters` hints: shown as hints.
    hints: Vec<FindingView>,
    info: Vec<FindingView>,
    resolved: Vec<FindingView>,
    notes: Vec<String>,
    diagnosed: Option<String>,
    up_to_date: bool,
    series: Vec<SeriesRow>,
    /// Loss, accuracy and learning rate.
    charts: Vec<ChartView>,
    /// The line charts' controls (see [`View::controls`]) and the view's
    /// query (empty for the default).
    controls: Vec<(&'static str, &'static str, Vec<charts::Choice>)>,
    view_q: String,
    hist: Option<String>,
    /// Gradient flow, updates, units, distributions (SVG escaped in `charts`).
    debug: debug::Debugging,
    /// Weight heatmap, feature maps, dataset and model panels.
    views: views::Views,
    /// The other views' query parameters, kept by the chart controls.
    chart_hidden: Vec<(&'static str, String)>,
    /// The run's event stream while it runs (see [`live`]).
    live: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RunQuery {
    /// The histogram key of the distribution charts.
    hist: Option<String>,
    /// The weight heatmap's tensor key and step, the feature maps' image
    /// key and step (see [`views::Pick`]).
    tensor: Option<String>,
    tensor_step: Option<String>,
    image: Option<String>,
    image_step: Option<String>,
    /// The line charts' view (see [`View`]).
    smooth: Option<String>,
    y: Option<String>,
    x: Option<String>,
    /// The predictions panel's split (see [`views::Pick`]).
    pred: Option<String>,
}

/// The preferred key of each role among a run's series.
/// A run's last step as shown: the furthest of its `series`, else its
/// `end_step`; `""` without either.
fn last_step(series: &[SeriesInfo], end_step: Option<u64>) -> String {
    series
        .iter()
        .filter_map(|s| s.last_step)
        .max()
        .or(end_step)
        .map_or_else(String::new, |s| s.to_string())
}

/// The last value of the series `key` among `series`, as shown; `""`
/// without one.
fn last_value(series: &[SeriesInfo], key: &str) -> String {
    series
        .iter()
        .find(|s| s.key == key)
        .and_then(|s| s.last_value)
        .map_or_else(String::new, |v| fmt_value(v.0))
}

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

/// Loss, accuracy and learning rate charts, with the onsets of the open
/// findings marked (per-layer charts are in [`debug`]).
async fn run_charts(
    state: &AppState,
    series: &[SeriesInfo],
    ctx: &PageCtx,
) -> Result<Vec<ChartView>, PageError> {
    let mut out = Vec::new();
    for chart in [ChartId::Loss, ChartId::Accuracy, ChartId::Lr] {
        let data = charts::load(state, chart, series, ctx).await?;
        out.push(ChartView::new(chart, ctx, charts::draw(chart, &data, ctx)));
    }
    Ok(out)
}

async fn run_page(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    Query(q): Query<RunQuery>,
) -> Result<Response, PageError> {
    let view = View::parse(q.smooth.as_deref(), q.y.as_deref(), q.x.as_deref())?;
    // Before the page's reads: what they show is at least this new.
    let live = live::run_events_url(&state.store, id).await?;
    let (run, findings, ctx) = charts::load_run(&state, id, view).await?;
    let diagnosis = state.store.diagnosis_state(id).await?;
    let is_open = |f: &&StoredFinding| f.status == FindingStatus::Open;
    let series = state.store.series(id).await?;
    let pick = views::Pick {
        hist: q.hist.clone(),
        tensor: q.tensor.clone(),
        tensor_step: q.tensor_step.clone(),
        image: q.image.clone(),
        image_step: q.image_step.clone(),
        smooth: q.smooth.clone(),
        y: q.y.clone(),
        x: q.x.clone(),
        pred: q.pred.clone(),
    };
    // The chart controls' form keeps the other views' choices.
    let chart_hidden = pick.hidden(&["hist", "smooth", "y", "x"]);
    let (charts, debug, views) = tokio::try_join!(
        run_charts(&state, &series, &ctx),
        debug::debugging(&state, &series, &ctx, q.hist.as_deref()),
        views::views(&state, id, &pick, &findings),
    )?;
    // The charts drawn, by anchor: a finding links to its chart if it is here.
    let drawn: Vec<&str> = charts
        .iter()
        .chain(&debug.grad_lines)
        .chain(&debug.updates)
        .filter(|c| c.svg.is_some())
        .map(|c| c.anchor.as_str())
        .chain(debug.units.iter().map(|u| u.anchor.as_str()))
        .collect();
    let view_of = |f: &StoredFinding| {
        let mut v = FindingView::from(f);
        v.chart = charts::chart_for(f.finding.kind)
            .filter(|c| drawn.contains(&c.anchor().as_str()))
            .map(|c| (c.anchor(), c.title()));
        if matches!(f.finding.kind, Kind::LabelErrors | Kind::ClassNotPredicted)
            && !views.predictions.splits.is_empty()
        {
            v.chart = Some(("predictions".into(), "predictions"));
        }
        v
    };
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
            .map(view_of)
            .collect(),
        hints: findings
            .iter()
            .filter(is_open)
            .filter(|f| !f.finding.severity.is_raised() && is_hint(f.finding.kind))
            .map(view_of)
            .collect(),
        info: findings
            .iter()
            .filter(is_open)
            .filter(|f| !f.finding.severity.is_raised() && !is_hint(f.finding.kind))
            .map(view_of)
            .collect(),
        resolved: findings
            .iter()
            .filter(|f| f.status == FindingStatus::Resolved)
            .map(view_of)
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
        views,
        chart_hidden,
        view_q: view.query(),
        controls: view.controls(),
        hist: q.hist.filter(|h| !h.is_empty()),
        live,
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
