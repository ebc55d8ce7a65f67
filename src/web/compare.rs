//! Compare and tune: the runs picked in the runs table side by side
//! (`GET /compare?run=ID&run=ID…`: any metric of theirs overlaid, a colour
//! per run, the config parameters that differ, each run's health), and a
//! project's hyperparameter view (`GET /projects/{name}/params`: parallel
//! coordinates of the config against a chosen metric, and how strongly each
//! parameter relates to it across the project's runs).
//!
//! The overlay reads each run's series as an envelope of at most about a
//! point a pixel, like the run page; the hyperparameter view reads one
//! summary row per run and series (last value, chunk extremes), never a
//! point. The shaping is pure (`compare::`, and the query parsing here).

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::charts::{Choice, View};
use super::{CHART_POINTS, fmt_time, key_for, last_step, last_value, render};
use crate::charts::axis::{self, XAxis};
use crate::charts::parallel;
use crate::charts::svg::{self, Line, Options, readout};
use crate::compare::config::{DiffRow, diff, flatten};
use crate::compare::metric::{Metric, choices, default_metric, lower_is_better_key};
use crate::compare::relation::{FEW_RUNS, Measure};
use crate::compare::tune::{TuneRun, reading, tune};
use crate::diagnostics::names::Role;
use crate::http::{AppError, AppState, PageError, Query};
use crate::model::{FindingStatus, Point, Run, SeriesInfo, Severity};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/compare", get(compare_page))
        .route("/compare/chart.svg", get(chart_svg))
        .route("/compare/chart.csv", get(chart_csv))
        .route("/projects/{name}/params", get(params_page))
}

/// Runs compared at once at most: each gets a colour of its own.
pub const MAX_RUNS: usize = svg::COLOURS;
/// The overlay's size in pixels (as the run page's line charts).
const SIZE: (u32, u32) = super::charts::SIZE;
/// Open findings listed under a run at most.
const FINDINGS_SHOWN: usize = 3;
/// Categories listed under a categorical parameter at most (best first).
const GROUPS_SHOWN: usize = 6;
/// Runs in the hyperparameter view's table of best runs.
const BEST_RUNS: usize = 10;

fn bad(field: &str, message: String) -> AppError {
    AppError::bad_request("invalid_query", Some(field.to_string()), message)
}

/// The compare page's query, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareQuery {
    /// Distinct, in the order given.
    pub runs: Vec<Uuid>,
    /// The metric overlaid; `None`: the default.
    pub key: Option<String>,
    pub view: View,
    /// Every parameter, not only those that differ.
    pub all: bool,
}

impl CompareQuery {
    /// From the raw query: `run` (repeated), `key`, `all`, and the line
    /// charts' `smooth`, `y`, `x`. Anything else, a bad id or too many runs
    /// is a 400 naming the field.
    pub fn parse(raw: Option<&str>) -> Result<CompareQuery, AppError> {
        let (mut runs, mut key, mut all) = (Vec::new(), None, false);
        let (mut smooth, mut y, mut x) = (None, None, None);
        for (k, v) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if k.contains('\0') || v.contains('\0') {
                return Err(bad(
                    &k,
                    "query parameters may not contain a NUL character".into(),
                ));
            }
            let v = v.trim().to_string();
            match k.as_ref() {
                "run" => {
                    if v.is_empty() {
                        continue;
                    }
                    let id = Uuid::parse_str(&v)
                        .map_err(|_| bad("run", format!("{v:?} is not a run id (a UUID)")))?;
                    if !runs.contains(&id) {
                        runs.push(id);
                    }
                }
                "key" => key = Some(v).filter(|v| !v.is_empty()),
                "all" => {
                    all = match v.as_str() {
                        "" | "0" | "false" => false,
                        "1" | "true" => true,
                        other => return Err(bad("all", format!("all {other:?} is not 1 or 0"))),
                    }
                }
                "smooth" => smooth = Some(v),
                "y" => y = Some(v),
                "x" => x = Some(v),
                other => {
                    return Err(bad(
                        other,
                        format!(
                            "unknown query parameter {other:?}: expected run, key, all, smooth, y or x"
                        ),
                    ));
                }
            }
        }
        if runs.len() > MAX_RUNS {
            return Err(bad(
                "run",
                format!(
                    "{} runs picked: compare at most {MAX_RUNS} at once",
                    runs.len()
                ),
            ));
        }
        let view = View::parse(smooth.as_deref(), y.as_deref(), x.as_deref())?;
        Ok(CompareQuery {
            runs,
            key,
            view,
            all,
        })
    }

    /// This query as a query string (no `?`), with `all` as given.
    pub fn query(&self, all: bool) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for id in &self.runs {
            ser.append_pair("run", &id.to_string());
        }
        if let Some(k) = &self.key {
            ser.append_pair("key", k);
        }
        let view = self.view.query();
        let mut q = ser.finish();
        if !view.is_empty() {
            q.push('&');
            q.push_str(&view);
        }
        if all {
            q.push_str("&all=1");
        }
        q
    }
}

/// The metric overlaid by default: the validation loss, else the training
/// loss, the validation then the training accuracy, else the first key.
fn default_key(series: &[SeriesInfo]) -> Option<String> {
    [Role::ValLoss, Role::TrainLoss, Role::ValAcc, Role::TrainAcc]
        .into_iter()
        .find_map(|r| key_for(series, r))
        .map(str::to_string)
        .or_else(|| series.first().map(|s| s.key.clone()))
}

/// Legend names: a run's name, with the start of its id when two compared
/// runs share a name.
fn labels(runs: &[Run]) -> Vec<String> {
    runs.iter()
        .map(|r| {
            if runs.iter().filter(|o| o.name == r.name).count() > 1 {
                format!("{} ({})", r.name, &r.id.to_string()[..8])
            } else {
                r.name.clone()
            }
        })
        .collect()
}

/// The overlay of `key`: a line per run (`(label, run's creation time,
/// points)`; a run without points is left out of the legend but keeps its
/// colour), on each run's own time since its start when the reader asked
/// for wall time and every run drawn has timestamps. `None` without a
/// point.
pub fn overlay(key: &str, data: &[(String, f64, Vec<Point>)], view: View) -> Option<String> {
    let drawn = || data.iter().filter(|(_, _, p)| !p.is_empty());
    drawn().next()?;
    let timed =
        view.x == XAxis::Time && drawn().all(|(_, _, p)| p.iter().any(|p| p.time.is_some()));
    let lines: Vec<Line> = data
        .iter()
        .map(|(label, created, points)| Line {
            label: label.clone(),
            points: if timed {
                let t0 = axis::time_origin(*created, &[points.as_slice()]);
                axis::by_time(points, t0).unwrap_or_default()
            } else {
                axis::by_step(points)
            },
        })
        .collect();
    let names: Vec<&str> = drawn().map(|(l, _, _)| l.as_str()).collect();
    let over = if timed {
        "time since each run's start"
    } else {
        "steps"
    };
    let mut desc = format!("{key} of {} over {over}", names.join(", "));
    if view.x == XAxis::Time && !timed {
        desc.push_str(": not every run has timestamps, so no time axis");
    }
    if view.smooth > 0.0 {
        desc.push_str(&format!(
            "; smoothed (exponential moving average, weight {})",
            view.smooth
        ));
    }
    let opts = Options {
        log_y: match view.y {
            super::charts::YScale::Auto => None,
            super::charts::YScale::Linear => Some(false),
            super::charts::YScale::Log => Some(true),
        },
        smooth: view.smooth,
        x: if timed { XAxis::Time } else { XAxis::Step },
        desc: Some(desc),
        ..Options::default()
    };
    svg::line_chart_with(key, &lines, &[], SIZE, &opts)
}

/// One compared run as the page shows it.
struct RunCard {
    id: String,
    name: String,
    project: String,
    colour: String,
    status: &'static str,
    worst: Option<&'static str>,
    open: usize,
    findings: Vec<(&'static str, &'static str, String)>,
    more_findings: usize,
    last_step: String,
    started: String,
    /// The overlaid key's last value and its best (lowest for a loss,
    /// highest otherwise) among the points read; empty without the key.
    last: String,
    best: String,
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    cards: Vec<RunCard>,
    /// Runs asked for that do not exist.
    missing: usize,
    /// The key overlaid, and every key of any run (the select).
    key: String,
    keys: Vec<(String, bool)>,
    best_word: &'static str,
    chart: Option<String>,
    /// Runs without the key.
    without_key: Vec<String>,
    svg_href: String,
    csv_href: String,
    controls: Vec<(&'static str, &'static str, Vec<Choice>)>,
    /// The runs' ids, for the form.
    ids: Vec<String>,
    all: bool,
    rows: Vec<DiffRow>,
    differing: usize,
    total_params: usize,
    toggle_href: String,
    /// The first run's project, for the link to its hyperparameter view.
    project: Option<String>,
}

/// What the page and its downloads read.
struct Loaded {
    runs: Vec<Run>,
    missing: usize,
    series: HashMap<Uuid, Vec<SeriesInfo>>,
    key: Option<String>,
    /// Per run (in order): its points of `key`, when it has the key.
    points: Vec<Option<Vec<Point>>>,
}

async fn load(state: &AppState, q: &CompareQuery) -> Result<Loaded, PageError> {
    let runs = state.store.runs_by_ids(&q.runs).await?;
    if runs.is_empty() && !q.runs.is_empty() {
        return Err(
            AppError::NotFound(format!("none of the {} runs picked exists", q.runs.len())).into(),
        );
    }
    let ids: Vec<Uuid> = runs.iter().map(|r| r.id).collect();
    let series = state.store.series_of_runs(&ids).await?;
    let union: Vec<SeriesInfo> = ids
        .iter()
        .flat_map(|id| series.get(id).into_iter().flatten().cloned())
        .collect();
    let key = q.key.clone().or_else(|| default_key(&union));
    let reads = runs.iter().map(|r| {
        let store = state.store.clone();
        let has = key
            .as_ref()
            .filter(|k| {
                series
                    .get(&r.id)
                    .is_some_and(|s| s.iter().any(|s| &s.key == *k))
            })
            .cloned();
        let id = r.id;
        async move {
            match has {
                Some(k) => Ok::<_, crate::store::StoreError>(
                    store
                        .downsampled(id, &k, None, None, CHART_POINTS)
                        .await?
                        .map(|s| s.points),
                ),
                None => Ok(None),
            }
        }
    });
    let points = futures_util::future::try_join_all(reads).await?;
    Ok(Loaded {
        missing: q.runs.len() - runs.len(),
        runs,
        series,
        key,
        points,
    })
}

/// Every run's line, in the order picked — empty for a run without the
/// key, so that each run keeps the colour of its place (an empty line is
/// neither drawn nor in the legend).
fn overlay_data(l: &Loaded) -> Vec<(String, f64, Vec<Point>)> {
    labels(&l.runs)
        .into_iter()
        .zip(&l.runs)
        .zip(&l.points)
        .map(|((label, run), p)| (label, run.created_at, p.clone().unwrap_or_default()))
        .collect()
}

async fn compare_page(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (q, l, key) = load_raw(&state, raw.as_deref()).await?;
    let findings =
        futures_util::future::try_join_all(l.runs.iter().map(|r| state.store.findings(r.id, None)))
            .await?;
    let lower = lower_is_better_key(&key);
    let chart = overlay(&key, &overlay_data(&l), q.view);
    let no_series = Vec::new();
    let cards: Vec<RunCard> = l
        .runs
        .iter()
        .zip(&findings)
        .zip(&l.points)
        .enumerate()
        .map(|(i, ((r, f), points))| {
            let open: Vec<_> = f
                .iter()
                .filter(|f| f.status == FindingStatus::Open && f.finding.severity.is_raised())
                .collect();
            let worst = open.iter().map(|f| f.finding.severity).max();
            let list = l.series.get(&r.id).unwrap_or(&no_series);
            let finite = || {
                points
                    .iter()
                    .flatten()
                    .map(|p| p.value)
                    .filter(|v| v.is_finite())
            };
            let best = if lower {
                finite().reduce(f64::min)
            } else {
                finite().reduce(f64::max)
            };
            RunCard {
                id: r.id.to_string(),
                name: r.name.clone(),
                project: r.project.clone(),
                colour: svg::line_colour(i),
                status: r.status.as_str(),
                worst: worst.map(Severity::as_str),
                open: open.len(),
                findings: open
                    .iter()
                    .take(FINDINGS_SHOWN)
                    .map(|f| {
                        (
                            f.finding.severity.as_str(),
                            f.finding.kind.as_str(),
                            f.finding.title.clone(),
                        )
                    })
                    .collect(),
                more_findings: open.len().saturating_sub(FINDINGS_SHOWN),
                last_step: last_step(list, r.end_step),
                started: fmt_time(r.created_at),
                last: last_value(list, &key),
                best: best.map_or_else(String::new, readout),
            }
        })
        .collect();
    let configs: Vec<Vec<(String, serde_json::Value)>> = l
        .runs
        .iter()
        .map(|r| {
            r.config
                .as_ref()
                .map(|c| flatten(&c.parse()))
                .unwrap_or_default()
        })
        .collect();
    let all_rows = diff(&configs);
    let differing = all_rows.iter().filter(|r| r.differs).count();
    let total_params = all_rows.len();
    let rows = all_rows
        .into_iter()
        .filter(|r| q.all || r.differs)
        .collect();
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for list in l.series.values() {
        keys.extend(list.iter().map(|s| s.key.as_str()));
    }
    let query = q.query(false);
    let href = |ext: &str| format!("/compare/chart.{ext}?{query}");
    let page = ComparePage {
        without_key: l
            .runs
            .iter()
            .zip(&l.points)
            .filter(|(_, p)| p.is_none())
            .map(|(r, _)| r.name.clone())
            .collect(),
        keys: keys.iter().map(|k| (k.to_string(), *k == key)).collect(),
        best_word: if lower { "lowest" } else { "highest" },
        svg_href: href("svg"),
        csv_href: href("csv"),
        controls: q.view.controls(),
        ids: l.runs.iter().map(|r| r.id.to_string()).collect(),
        all: q.all,
        toggle_href: format!("/compare?{}", q.query(!q.all)),
        project: l.runs.first().map(|r| r.project.clone()),
        missing: l.missing,
        cards,
        key,
        chart,
        rows,
        differing,
        total_params,
    };
    render(&page)
}

/// The compare query in `raw`, what it loads and its metric (`""`: none).
async fn load_raw(
    state: &AppState,
    raw: Option<&str>,
) -> Result<(CompareQuery, Loaded, String), PageError> {
    let q = CompareQuery::parse(raw)?;
    let l = load(state, &q).await?;
    let key = l.key.clone().unwrap_or_default();
    Ok((q, l, key))
}

async fn chart_svg(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (q, l, key) = load_raw(&state, raw.as_deref()).await?;
    let svg = overlay(&key, &overlay_data(&l), q.view).ok_or_else(|| {
        AppError::NotFound(if key.is_empty() {
            "nothing to draw: the runs picked have no series".to_string()
        } else {
            format!("nothing to draw: no run picked logged {key:?}")
        })
    })?;
    Ok(super::attachment("compare.svg", svg))
}

async fn chart_csv(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (_, l, key) = load_raw(&state, raw.as_deref()).await?;
    let mut body = crate::csv_export::RUN_SCALARS_HEADER.to_string();
    for (run, points) in l.runs.iter().zip(&l.points) {
        if let Some(points) = points {
            body.push_str(&crate::csv_export::run_point_rows(
                &run.id.to_string(),
                &run.name,
                &key,
                points,
            ));
        }
    }
    Ok(super::attachment("compare.csv", body))
}

/// The hyperparameter view's query.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsQuery {
    /// `min:val/loss` (see [`Metric::parse`]).
    metric: Option<String>,
}

/// One parameter's row.
struct RelationRow {
    param: String,
    kind: &'static str,
    /// |ρ| or η as a percentage of the bar; `None`: not reported.
    strength: Option<f64>,
    figure: String,
    reading: String,
    /// Categories, best first: `(label, runs, median)`, the first
    /// [`GROUPS_SHOWN`]; how many more.
    groups: Vec<(String, usize, String)>,
    more_groups: usize,
    n: usize,
    few: bool,
    why: &'static str,
}

struct BestRun {
    id: String,
    name: String,
    metric: String,
    /// The axes' parameters' values, in the axes' order.
    values: Vec<String>,
}

#[derive(Template)]
#[template(path = "params.html")]
struct ParamsPage {
    project: String,
    runs: usize,
    metric: Option<String>,
    metric_label: String,
    metric_key: String,
    choices: Vec<(String, String, bool)>,
    lower_is_better: bool,
    used: usize,
    missing_metric: usize,
    without_params: usize,
    chart: Option<String>,
    relations: Vec<RelationRow>,
    axes: Vec<String>,
    best: Vec<BestRun>,
    few_runs: usize,
    /// Whether a reported figure rests on fewer than `few_runs` runs.
    any_few: bool,
}

async fn params_page(
    State(state): State<AppState>,
    Path(project): Path<String>,
    Query(q): Query<ParamsQuery>,
) -> Result<Response, PageError> {
    let projects = state.store.list_projects().await?;
    if !projects.iter().any(|p| p.name == project) {
        return Err(AppError::NotFound(format!("no project {project:?}")).into());
    }
    let (runs, summaries) = tokio::try_join!(
        state.store.project_runs(&project),
        state.store.metric_summaries(&project),
    )?;
    let mut keys: BTreeSet<&str> = BTreeSet::new();
    for list in summaries.values() {
        keys.extend(list.iter().map(|s| s.key.as_str()));
    }
    let options = choices(keys.iter().copied());
    let metric = match q.metric.as_deref().map(str::trim).filter(|m| !m.is_empty()) {
        Some(m) => Some(Metric::parse(m).map_err(|e| bad("metric", e))?),
        None => default_metric(keys.iter().copied()),
    };
    let mut choices_view: Vec<(String, String, bool)> = options
        .iter()
        .map(|m| (m.param(), m.label(), Some(m) == metric.as_ref()))
        .collect();
    if let Some(m) = &metric
        && !options.contains(m)
    {
        choices_view.push((m.param(), m.label(), true));
    }
    let label = metric.as_ref().map(Metric::label).unwrap_or_default();
    let lower = metric.as_ref().is_none_or(Metric::lower_is_better);
    let tune_runs: Vec<TuneRun> = runs
        .iter()
        .map(|r| TuneRun {
            label: r.name.clone(),
            params: r
                .config
                .as_ref()
                .map(|c| flatten(&c.parse()))
                .unwrap_or_default(),
            metric: metric.as_ref().and_then(|m| {
                let s = summaries.get(&r.id)?.iter().find(|s| s.key == m.key)?;
                m.value(s.last, s.min, s.max)
            }),
        })
        .collect();
    let title = format!("{project}: hyperparameters against {label}");
    let t = tune(&title, &tune_runs, &label, lower);
    let axes: Vec<String> = t
        .chart
        .as_ref()
        .map(|c| c.axes.iter().map(|a| a.label.clone()).collect())
        .unwrap_or_default();
    let key = metric.as_ref().map(|m| m.key.as_str()).unwrap_or_default();
    let relations = t
        .relations
        .iter()
        .map(|r| RelationRow {
            param: r.param.clone(),
            kind: if r.numeric { "number" } else { "category" },
            strength: r.strength().map(|s| s * 100.0),
            figure: match &r.measure {
                Measure::Spearman { rho } => format!("ρ = {rho:+.2}"),
                Measure::Categories { eta, .. } => format!("η = {eta:.2}"),
                Measure::None(_) => String::new(),
            },
            reading: reading(r, key).unwrap_or_default(),
            groups: match &r.measure {
                Measure::Categories { groups, .. } => groups
                    .iter()
                    .take(GROUPS_SHOWN)
                    .map(|g| (g.label.clone(), g.n, readout(g.median)))
                    .collect(),
                _ => Vec::new(),
            },
            more_groups: match &r.measure {
                Measure::Categories { groups, .. } => groups.len().saturating_sub(GROUPS_SHOWN),
                _ => 0,
            },
            n: r.n,
            few: r.few(),
            why: match &r.measure {
                Measure::None(why) => why,
                _ => "",
            },
        })
        .collect();
    let mut ranked: Vec<(&Run, &TuneRun, f64)> = runs
        .iter()
        .zip(&tune_runs)
        .filter_map(|(r, t)| Some((r, t, t.metric?)))
        .collect();
    ranked.sort_by(|a, b| {
        let o = a.2.total_cmp(&b.2);
        if lower { o } else { o.reverse() }
    });
    let best = ranked
        .into_iter()
        .take(BEST_RUNS)
        .map(|(r, t, m)| BestRun {
            id: r.id.to_string(),
            name: r.name.clone(),
            metric: readout(m),
            values: axes
                .iter()
                .map(|a| {
                    t.params
                        .iter()
                        .find(|(k, _)| k == a)
                        .map_or_else(String::new, |(_, v)| crate::compare::config::text(v))
                })
                .collect(),
        })
        .collect();
    render(&ParamsPage {
        runs: runs.len(),
        metric: metric.as_ref().map(Metric::param),
        metric_label: label,
        metric_key: key.to_string(),
        choices: choices_view,
        lower_is_better: lower,
        used: t.used,
        missing_metric: t.missing_metric,
        without_params: t.without_params,
        chart: t.chart.as_ref().and_then(parallel::parallel),
        relations,
        axes,
        best,
        few_runs: FEW_RUNS,
        any_few: t
            .relations
            .iter()
            .any(|r| r.strength().is_some() && r.few()),
        project,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_compare_query_parses_and_prints_back() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let raw = format!("run={a}&run={b}&run={a}&run=&key=val%2Floss&smooth=0.9&all=1");
        let q = CompareQuery::parse(Some(&raw)).unwrap();
        assert_eq!(q.runs, [a, b], "distinct, in order");
        assert_eq!(q.key.as_deref(), Some("val/loss"));
        assert!(q.all && q.view.smooth == 0.9);
        assert_eq!(
            q.query(false),
            format!("run={a}&run={b}&key=val%2Floss&smooth=0.9")
        );
        assert!(q.query(true).ends_with("&all=1"));
        assert_eq!(CompareQuery::parse(Some(&q.query(true))).unwrap(), q);
        let empty = CompareQuery::parse(None).unwrap();
        assert!(empty.runs.is_empty() && empty.key.is_none() && !empty.all);
        let field = |raw: &str| match CompareQuery::parse(Some(raw)) {
            Err(AppError::BadRequest { field, .. }) => field.unwrap_or_default(),
            other => panic!("{raw}: {other:?}"),
        };
        assert_eq!(field("run=nope"), "run");
        assert_eq!(field("runs=1"), "runs");
        assert_eq!(field("all=yes"), "all");
        assert_eq!(field("smooth=2"), "smooth");
        assert_eq!(field("key=a%00b"), "key");
        let many: Vec<String> = (0..=MAX_RUNS)
            .map(|_| format!("run={}", Uuid::new_v4()))
            .collect();
        assert_eq!(field(&many.join("&")), "run");
    }

    fn pts(n: u64, f: impl Fn(u64) -> f64, timed: bool) -> Vec<Point> {
        (0..n)
            .map(|s| Point {
                step: s,
                value: f(s),
                time: timed.then_some(1000.0 + s as f64),
            })
            .collect()
    }

    #[test]
    fn the_overlay_has_a_line_and_a_legend_entry_per_run() {
        let data = vec![
            (
                "<script>alert(1)</script>".to_string(),
                1000.0,
                pts(50, |s| 2.0 - s as f64 * 0.01, true),
            ),
            (
                "\"><svg onload=alert(1)>".to_string(),
                5000.0,
                pts(80, |s| 1.5 - s as f64 * 0.01, true),
            ),
        ];
        let view = View {
            smooth: 0.0,
            ..View::default()
        };
        let svg = overlay("val/loss", &data, view).unwrap();
        assert!(!svg.contains("<script>") && !svg.contains("<svg onload"));
        assert!(svg.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(svg.contains("<title>val/loss</title>"));
        assert!(svg.contains("over steps"));
        for c in [svg::line_colour(0), svg::line_colour(1)] {
            assert!(svg.to_lowercase().contains(&c), "{c}");
        }
        // On wall time each run starts at its own zero.
        let time = View {
            x: XAxis::Time,
            ..view
        };
        let svg = overlay("val/loss", &data, time).unwrap();
        assert!(svg.contains("time since each run") && svg.contains("time since start"));
        let mut untimed = data.clone();
        untimed[1].2 = pts(10, |_| 1.0, false);
        let svg = overlay("val/loss", &untimed, time).unwrap();
        assert!(svg.contains("no time axis"));
        assert!(overlay("k", &[], view).is_none());
    }

    #[test]
    fn shared_names_get_the_start_of_their_id() {
        let run = |name: &str| Run {
            id: Uuid::new_v4(),
            project: "p".into(),
            name: name.into(),
            status: crate::model::RunStatus::Running,
            config: None,
            tags: Vec::new(),
            run_key: None,
            created_at: 0.0,
            updated_at: 0.0,
            heartbeat_at: None,
            end_step: None,
            data_version: 0,
        };
        let runs = [run("a"), run("a"), run("b")];
        let l = labels(&runs);
        assert!(l[0].starts_with("a (") && l[0] != l[1]);
        assert_eq!(l[2], "b");
    }
}
