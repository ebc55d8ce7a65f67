//! The run page's line charts as one catalogue: which series each draws,
//! the view the reader picked (smoothing, y scale, x axis: `?smooth=0.6&y=log
//! &x=time`), which chart holds the evidence of each kind of finding (the
//! finding links to it, `#chart-…`), what to log to fill an empty one, and
//! each chart's downloads, `GET /runs/{id}/charts/{chart}.svg` and `.csv`
//! (the points drawn, in the export's long form), with the page's query.
//!
//! Drawing is pure ([`draw`]); the reads are envelope reads of at most about
//! a point a pixel, as for the page.

use axum::extract::{Path, State};
use axum::response::Response;

use super::debug::{self, read_rows};
use super::views;
use super::{CHART_POINTS, key_for};
use crate::charts::axis::{self, XAxis};
use crate::charts::layers::spread;
use crate::charts::smooth;
use crate::charts::svg::{self, Band, Line, Marker, Options};
use crate::diagnostics::Kind;
use crate::diagnostics::names::Role;
use crate::http::{AppError, AppState, PageError, Query, RunId};
use crate::model::{FindingStatus, Point, Run, SeriesInfo};
use crate::store::findings::StoredFinding;

/// Line charts' size in pixels.
pub const SIZE: (u32, u32) = (900, 300);
/// Layers drawn as lines (the heatmap shows them all).
pub const LINE_LAYERS: usize = 8;
/// The healthy ‖Δw‖/‖w‖ range around the classic 1e-3 rule of thumb.
pub const UPDATE_BAND: (f64, f64) = (1e-4, 1e-2);

/// A chart of the run page that a finding can point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChartId {
    Loss,
    Accuracy,
    Lr,
    /// Per-layer gradient norm lines.
    GradNorm,
    /// Per-layer update ratio lines.
    UpdateRatio,
    /// The dead-unit heatmap.
    DeadUnits,
    /// The saturated-unit heatmap.
    SaturatedUnits,
}

impl ChartId {
    /// The line charts, which have downloads.
    pub const LINES: [ChartId; 5] = [
        ChartId::Loss,
        ChartId::Accuracy,
        ChartId::Lr,
        ChartId::GradNorm,
        ChartId::UpdateRatio,
    ];

    pub fn slug(self) -> &'static str {
        match self {
            ChartId::Loss => "loss",
            ChartId::Accuracy => "accuracy",
            ChartId::Lr => "lr",
            ChartId::GradNorm => "grad-norm",
            ChartId::UpdateRatio => "update-ratio",
            ChartId::DeadUnits => "dead-units",
            ChartId::SaturatedUnits => "saturated-units",
        }
    }

    /// A line chart by its slug.
    pub fn line(slug: &str) -> Option<ChartId> {
        Self::LINES.into_iter().find(|c| c.slug() == slug)
    }

    /// The `id` of its figure on the run page.
    pub fn anchor(self) -> String {
        format!("chart-{}", self.slug())
    }

    pub fn title(self) -> &'static str {
        match self {
            ChartId::Loss => "Loss",
            ChartId::Accuracy => "Accuracy",
            ChartId::Lr => "Learning rate",
            ChartId::GradNorm => "Gradient norm per layer",
            ChartId::UpdateRatio => "Update ratio ‖Δw‖/‖w‖ per layer",
            ChartId::DeadUnits => "Dead units per layer",
            ChartId::SaturatedUnits => "Saturated units per layer",
        }
    }

    /// The empty state: what to log to fill the chart. Static HTML.
    pub fn empty(self) -> &'static str {
        match self {
            ChartId::Loss => {
                "No loss logged: log <code>train/loss</code> (and <code>val/loss</code>) to see the loss curves."
            }
            ChartId::Accuracy => {
                "No accuracy logged: log <code>train/acc</code> and <code>val/acc</code> to see the accuracy."
            }
            ChartId::Lr => "No learning rate logged: log <code>lr</code> to see the schedule.",
            ChartId::GradNorm => {
                "No per-layer gradients logged: <code>trainlens.torch.watch(run, model)</code> logs <code>grad_norm/&lt;layer&gt;</code>."
            }
            ChartId::UpdateRatio => {
                "No update ratios logged: <code>trainlens.torch.watch(run, model)</code> logs <code>update_ratio/&lt;layer&gt;</code>."
            }
            ChartId::DeadUnits => {
                "No dead-unit fractions logged (<code>dead_frac/&lt;layer&gt;</code>)."
            }
            ChartId::SaturatedUnits => {
                "No saturation fractions logged (<code>sat_frac/&lt;layer&gt;</code>)."
            }
        }
    }

    /// Whether smoothing applies: a learning rate is a schedule, not noise.
    fn smoothable(self) -> bool {
        !matches!(self, ChartId::Lr)
    }
}

/// The chart that shows the evidence of a finding of `kind`, where its
/// onset is marked; `None` for the data findings, which have no line chart.
pub fn chart_for(kind: Kind) -> Option<ChartId> {
    use Kind::*;
    match kind {
        Divergence
        | Overfitting
        | Underfitting
        | OscillatingLoss
        | SlowConvergence
        | LossActivationMismatch => Some(ChartId::Loss),
        ExplodingGradients | VanishingGradients => Some(ChartId::GradNorm),
        UnchangedWeights => Some(ChartId::UpdateRatio),
        DeadRelu => Some(ChartId::DeadUnits),
        SaturatedActivations => Some(ChartId::SaturatedUnits),
        ClassImbalance | DistributionShift | MissingValues | Architecture | Hyperparameters => None,
        LabelErrors | ClassNotPredicted => None,
    }
}

/// The y scale asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum YScale {
    /// Each chart's own choice (log for a curve over three decades).
    #[default]
    Auto,
    Linear,
    Log,
}

/// How the reader wants the line charts drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct View {
    /// TensorBoard's smoothing weight, 0 (off) to [`smooth::MAX_WEIGHT`].
    pub smooth: f64,
    pub y: YScale,
    pub x: XAxis,
}

impl Default for View {
    fn default() -> Self {
        View {
            smooth: smooth::DEFAULT_WEIGHT,
            y: YScale::Auto,
            x: XAxis::Step,
        }
    }
}

/// The smoothing weights the page's control offers.
pub const SMOOTH_CHOICES: [f64; 7] = [0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99];

fn bad(field: &str, message: String) -> AppError {
    AppError::bad_request("invalid_query", Some(field.into()), message)
}

impl View {
    /// The view from the query's words; a missing or empty one is the
    /// default.
    pub fn parse(smooth: Option<&str>, y: Option<&str>, x: Option<&str>) -> Result<View, AppError> {
        fn given(v: Option<&str>) -> Option<&str> {
            v.map(str::trim).filter(|v| !v.is_empty())
        }
        let mut view = View::default();
        if let Some(s) = given(smooth) {
            view.smooth = s
                .parse::<f64>()
                .ok()
                .filter(|w| (0.0..=smooth::MAX_WEIGHT).contains(w))
                .ok_or_else(|| {
                    bad(
                        "smooth",
                        format!(
                            "smooth {s:?} is not a weight from 0 to {}",
                            smooth::MAX_WEIGHT
                        ),
                    )
                })?;
        }
        view.y = match given(y) {
            None | Some("auto") => YScale::Auto,
            Some("linear") => YScale::Linear,
            Some("log") => YScale::Log,
            Some(other) => {
                return Err(bad(
                    "y",
                    format!("y {other:?} is not one of auto, linear, log"),
                ));
            }
        };
        view.x = match given(x) {
            None | Some("step") => XAxis::Step,
            Some("time") => XAxis::Time,
            Some(other) => return Err(bad("x", format!("x {other:?} is not one of step, time"))),
        };
        Ok(view)
    }

    /// The query of this view, without the defaults (empty for the
    /// default view), e.g. `smooth=0.9&x=time`.
    pub fn query(&self) -> String {
        let d = View::default();
        let mut ser = form_urlencoded::Serializer::new(String::new());
        if self.smooth != d.smooth {
            ser.append_pair("smooth", &self.smooth.to_string());
        }
        match self.y {
            YScale::Auto => {}
            YScale::Linear => {
                ser.append_pair("y", "linear");
            }
            YScale::Log => {
                ser.append_pair("y", "log");
            }
        }
        if self.x == XAxis::Time {
            ser.append_pair("x", "time");
        }
        ser.finish()
    }

    /// The page's controls: `(name, label, options)` of each select, the
    /// current choice selected (a weight given in the URL that is not one of
    /// [`SMOOTH_CHOICES`] is added).
    pub fn controls(&self) -> Vec<(&'static str, &'static str, Vec<Choice>)> {
        let mut weights = SMOOTH_CHOICES.to_vec();
        if !weights.contains(&self.smooth) {
            weights.push(self.smooth);
            weights.sort_by(f64::total_cmp);
        }
        let smooth = weights
            .into_iter()
            .map(|w| Choice {
                value: w.to_string(),
                label: if w == 0.0 {
                    "off".into()
                } else {
                    w.to_string()
                },
                selected: w == self.smooth,
            })
            .collect();
        let words = |all: &[(&str, &str)], current: &str| {
            all.iter()
                .map(|(value, label)| Choice {
                    value: value.to_string(),
                    label: label.to_string(),
                    selected: *value == current,
                })
                .collect()
        };
        let y = match self.y {
            YScale::Auto => "auto",
            YScale::Linear => "linear",
            YScale::Log => "log",
        };
        let x = match self.x {
            XAxis::Step => "step",
            XAxis::Time => "time",
        };
        vec![
            ("smooth", "smoothing", smooth),
            (
                "y",
                "y",
                words(&[("auto", "auto"), ("linear", "linear"), ("log", "log")], y),
            ),
            (
                "x",
                "x",
                words(&[("step", "step"), ("time", "wall time")], x),
            ),
        ]
    }
}

/// One option of a select.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// What every chart of one page (or one download) shares.
pub struct PageCtx {
    pub run: uuid::Uuid,
    /// The run's creation (unix seconds), the origin of a time axis unless a
    /// point is older.
    pub created_at: f64,
    /// The onsets of the open raised findings, by step.
    pub markers: Vec<Marker>,
    /// The layers the open raised findings name: their lines are drawn
    /// whatever the spread of layers.
    pub layers: Vec<String>,
    pub view: View,
    /// Model order of the layers.
    pub order: Vec<String>,
}

impl PageCtx {
    pub fn new(
        run: uuid::Uuid,
        created_at: f64,
        findings: &[StoredFinding],
        view: View,
        order: Vec<String>,
    ) -> PageCtx {
        let open = || {
            findings
                .iter()
                .filter(|f| f.status == FindingStatus::Open && f.finding.severity.is_raised())
        };
        PageCtx {
            run,
            created_at,
            markers: open()
                .filter_map(|f| {
                    Some(Marker {
                        step: f.finding.onset_step?,
                        label: f.finding.kind.as_str().to_string(),
                    })
                })
                .collect(),
            layers: open()
                .filter_map(|f| f.finding.evidence.layer.clone())
                .collect(),
            view,
            order,
        }
    }
}

/// One chart as the page shows it.
pub struct ChartView {
    pub anchor: String,
    /// SVG markup made by `charts::svg` (its text escaped there); `None`:
    /// the empty state.
    pub svg: Option<String>,
    /// Static HTML (see [`ChartId::empty`]).
    pub empty: &'static str,
    /// The downloads' path without the extension (for `static/charts.js`).
    pub src: String,
    pub svg_href: String,
    pub csv_href: String,
}

impl ChartView {
    pub fn new(chart: ChartId, ctx: &PageCtx, svg: Option<String>) -> ChartView {
        let q = ctx.view.query();
        let src = format!("/runs/{}/charts/{}", ctx.run, chart.slug());
        let href = |ext: &str| {
            if q.is_empty() {
                format!("{src}.{ext}")
            } else {
                format!("{src}.{ext}?{q}")
            }
        };
        ChartView {
            anchor: chart.anchor(),
            src: src.clone(),
            svg,
            empty: chart.empty(),
            svg_href: href("svg"),
            csv_href: href("csv"),
        }
    }
}

/// At most `n` of `keys` (`(layer, key)`, input side first), evenly spread,
/// always with the layers in `wanted` (a finding's layer is drawn), in the
/// order of `keys`.
pub fn pick_layers(
    keys: &[(String, String)],
    n: usize,
    wanted: &[String],
) -> Vec<(String, String)> {
    let must: Vec<usize> = (0..keys.len())
        .filter(|&i| wanted.contains(&keys[i].0))
        .take(n)
        .collect();
    let others: Vec<usize> = (0..keys.len()).filter(|i| !must.contains(i)).collect();
    let mut picked = spread(others, n.saturating_sub(must.len()));
    picked.extend(must);
    picked.sort_unstable();
    picked.into_iter().map(|i| keys[i].clone()).collect()
}

/// The series `chart` draws for a run with `series`: `(layer or "", key)`.
fn keys_of(chart: ChartId, series: &[SeriesInfo], ctx: &PageCtx) -> Vec<(String, String)> {
    let roles: &[Role] = match chart {
        ChartId::Loss => &[Role::TrainLoss, Role::ValLoss],
        ChartId::Accuracy => &[Role::TrainAcc, Role::ValAcc],
        ChartId::Lr => &[Role::Lr],
        ChartId::GradNorm | ChartId::UpdateRatio => {
            let role = if chart == ChartId::GradNorm {
                Role::GradNorm
            } else {
                Role::UpdateRatio
            };
            return pick_layers(
                &debug::layer_keys(series, role, &ctx.order),
                LINE_LAYERS,
                &ctx.layers,
            );
        }
        ChartId::DeadUnits | ChartId::SaturatedUnits => return Vec::new(),
    };
    roles
        .iter()
        .filter_map(|r| key_for(series, *r))
        .map(|k| (String::new(), k.to_string()))
        .collect()
}

/// Reads the points `chart` draws: `(key, points)` in drawing order.
pub async fn load(
    state: &AppState,
    chart: ChartId,
    series: &[SeriesInfo],
    ctx: &PageCtx,
) -> Result<Vec<(String, Vec<Point>)>, PageError> {
    let keys = keys_of(chart, series, ctx);
    let max_points = match chart {
        // The per-layer lines read what the heatmap beside them reads.
        ChartId::GradNorm | ChartId::UpdateRatio => debug::layer_bins(&debug::per_layer(series)).0,
        _ => CHART_POINTS,
    };
    Ok(read_rows(state, ctx.run, &keys, max_points)
        .await?
        .into_iter()
        .map(|r| (r.key, r.points))
        .collect())
}

/// Draws `chart` of `data` (`(key, points sorted by step)`) as the reader
/// asked: on a time axis when every series has timestamps (else by step,
/// and the description says so), smoothed when the chart is, with the
/// findings' onsets. `None` when there is no point.
pub fn draw(chart: ChartId, data: &[(String, Vec<Point>)], ctx: &PageCtx) -> Option<String> {
    let view = ctx.view;
    let slices: Vec<&[Point]> = data.iter().map(|(_, p)| p.as_slice()).collect();
    let timed = view.x == XAxis::Time
        && !data.is_empty()
        && data.iter().all(|(_, p)| p.iter().any(|p| p.time.is_some()));
    let t0 = axis::time_origin(ctx.created_at, &slices);
    let lines: Vec<Line> = data
        .iter()
        .map(|(key, points)| Line {
            label: key.clone(),
            points: if timed {
                axis::by_time(points, t0).unwrap_or_default()
            } else {
                axis::by_step(points)
            },
        })
        .collect();
    let markers: Vec<Marker> = ctx
        .markers
        .iter()
        .filter_map(|m| {
            let step = if timed {
                axis::step_to_time(m.step, &slices, t0)?
            } else {
                m.step
            };
            Some(Marker {
                step,
                label: m.label.clone(),
            })
        })
        .collect();
    let mut opts = Options {
        log_y: match view.y {
            YScale::Auto => (chart == ChartId::UpdateRatio).then_some(true),
            YScale::Linear => Some(false),
            YScale::Log => Some(true),
        },
        smooth: if chart.smoothable() { view.smooth } else { 0.0 },
        x: if timed { XAxis::Time } else { XAxis::Step },
        ..Options::default()
    };
    if chart == ChartId::UpdateRatio {
        opts.band = Some(Band {
            lo: UPDATE_BAND.0,
            hi: UPDATE_BAND.1,
            label: "healthy 1e-4 – 1e-2".into(),
        });
    }
    if view.x == XAxis::Time && !timed {
        let names: Vec<&str> = data.iter().map(|(k, _)| k.as_str()).collect();
        opts.desc = Some(format!(
            "{} over steps: not every series has timestamps, so no time axis",
            names.join(", ")
        ));
    }
    svg::line_chart_with(chart.title(), &lines, &markers, SIZE, &opts)
}

/// What a run's page and its chart downloads read first: the run, its
/// findings and the charts' context made from them (onsets, model order).
pub async fn load_run(
    state: &AppState,
    id: uuid::Uuid,
    view: View,
) -> Result<(Run, Vec<StoredFinding>, PageCtx), AppError> {
    let run = state
        .store
        .get_run(id)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("no run {id}")))?;
    let findings = state.store.findings(id, None).await?;
    let order: Vec<String> = state
        .store
        .model(id)
        .await?
        .map(|m| m.layers.into_iter().map(|l| l.name).collect())
        .unwrap_or_default();
    let ctx = PageCtx::new(id, run.created_at, &findings, view, order);
    Ok((run, findings, ctx))
}

/// `GET /runs/{id}/charts/{chart}.svg|.csv`: a line chart (with the page's
/// view), a heatmap (`grad-flow`, `dead-units`, `saturated-units`), a
/// histogram key's distribution (`distribution`, `histograms`, with
/// `?hist=KEY`), or the views' `weights` and `feature-map` (`.png` too; see
/// [`views::download`]).
pub async fn download(
    State(state): State<AppState>,
    Path((id, file)): Path<(String, String)>,
    Query(q): Query<ChartQuery>,
) -> Result<Response, PageError> {
    let RunId(id) = RunId::parse(&id)?;
    let not_found = || AppError::NotFound(format!("no chart {file:?}"));
    let (slug, ext) = file.rsplit_once('.').ok_or_else(not_found)?;
    super::file_type(ext).ok_or_else(not_found)?;
    let csv = ext == "csv";
    let view = View::parse(q.smooth.as_deref(), q.y.as_deref(), q.x.as_deref())?;
    let (_, _, ctx) = load_run(&state, id, view).await?;
    let short = &id.to_string()[..8];
    if let Some(which) = views::Download::by_slug(slug) {
        let (name, body) = views::download(&state, id, which, ext, &q)
            .await?
            .ok_or_else(not_found)?;
        return Ok(super::attachment(&format!("{short}-{name}.{ext}"), body));
    }
    if ext == "png" {
        return Err(not_found().into());
    }
    let nothing = |empty: &str| {
        AppError::NotFound(format!(
            "nothing to draw: {}",
            empty
                .replace("<code>", "`")
                .replace("</code>", "`")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
        ))
    };
    let body = if let Some(chart) = ChartId::line(slug) {
        let series = state.store.series(id).await?;
        let data = load(&state, chart, &series, &ctx).await?;
        if csv {
            let mut body = crate::csv_export::SCALARS_HEADER.to_string();
            for (key, points) in &data {
                body.push_str(&crate::csv_export::point_rows(key, points));
            }
            body
        } else {
            draw(chart, &data, &ctx).ok_or_else(|| nothing(chart.empty()))?
        }
    } else if let Some(which) = debug::Heat::by_slug(slug) {
        let series = state.store.series(id).await?;
        let heat = debug::heat(&state, &series, &ctx, which).await?;
        if csv {
            let mut body = crate::csv_export::SCALARS_HEADER.to_string();
            for r in &heat.reads {
                body.push_str(&crate::csv_export::point_rows(&r.key, &r.points));
            }
            body
        } else {
            heat.svg.ok_or_else(|| nothing(which.empty()))?
        }
    } else if let Some(which) = debug::Dist::by_slug(slug) {
        let key = q.hist.as_deref().filter(|k| !k.is_empty()).ok_or_else(|| {
            AppError::bad_request(
                "invalid_query",
                "hist".to_string(),
                "hist (a histogram key) is required",
            )
        })?;
        let dist = debug::distribution(&state, id, key).await?;
        if dist.records.is_empty() {
            return Err(AppError::NotFound(format!("no histograms {key:?}")).into());
        }
        if csv {
            format!(
                "{}{}",
                crate::csv_export::HISTOGRAM_HEADER,
                crate::csv_export::histogram_rows(&dist.records)
            )
        } else {
            match which {
                debug::Dist::Bands => dist.bands,
                debug::Dist::Ridge => dist.ridge,
            }
            .ok_or_else(|| nothing("every histogram of this key is empty"))?
        }
    } else {
        return Err(not_found().into());
    };
    Ok(super::attachment(&format!("{short}-{slug}.{ext}"), body))
}

/// A download's query: the page's view, or the key (and step) of the
/// chart's data, named as on the page.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChartQuery {
    smooth: Option<String>,
    y: Option<String>,
    x: Option<String>,
    /// The histogram key of a distribution's download.
    hist: Option<String>,
    /// The weight heatmap's tensor key and step (see [`views::download`]).
    pub tensor: Option<String>,
    pub tensor_step: Option<String>,
    /// A feature map's image key and step, and the channel of its PNG.
    pub image: Option<String>,
    pub image_step: Option<String>,
    pub channel: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_finding_kind_points_at_the_chart_of_its_evidence() {
        use Kind::*;
        assert_eq!(chart_for(Divergence), Some(ChartId::Loss));
        assert_eq!(chart_for(Overfitting), Some(ChartId::Loss));
        assert_eq!(chart_for(ExplodingGradients), Some(ChartId::GradNorm));
        assert_eq!(chart_for(VanishingGradients), Some(ChartId::GradNorm));
        assert_eq!(chart_for(UnchangedWeights), Some(ChartId::UpdateRatio));
        assert_eq!(chart_for(DeadRelu), Some(ChartId::DeadUnits));
        assert_eq!(
            chart_for(SaturatedActivations),
            Some(ChartId::SaturatedUnits)
        );
        assert_eq!(chart_for(ClassImbalance), None);
        // Every kind's word parses back, and every chart has its own anchor.
        for word in Kind::WORDS {
            let kind: Kind = word.parse().unwrap();
            if let Some(c) = chart_for(kind) {
                assert!(c.anchor().starts_with("chart-") && !c.empty().is_empty());
            }
        }
        let anchors: std::collections::BTreeSet<String> =
            [ChartId::DeadUnits, ChartId::SaturatedUnits]
                .into_iter()
                .chain(ChartId::LINES)
                .map(ChartId::anchor)
                .collect();
        assert_eq!(anchors.len(), 7);
        assert_eq!(ChartId::line("lr"), Some(ChartId::Lr));
        assert_eq!(
            ChartId::line("dead-units"),
            None,
            "a heatmap, not a line chart"
        );
    }

    #[test]
    fn views_from_the_query_and_back() {
        let d = View::parse(None, None, None).unwrap();
        assert_eq!(d, View::default());
        assert_eq!(d.query(), "");
        assert_eq!(View::parse(Some(""), Some(""), Some("")).unwrap(), d);
        let v = View::parse(Some("0.9"), Some("log"), Some("time")).unwrap();
        assert_eq!((v.smooth, v.y, v.x), (0.9, YScale::Log, XAxis::Time));
        assert_eq!(v.query(), "smooth=0.9&y=log&x=time");
        assert_eq!(
            View::parse(Some("0"), None, None).unwrap().query(),
            "smooth=0"
        );
        for (s, y, x) in [
            (Some("1"), None, None),
            (Some("-0.1"), None, None),
            (Some("NaN"), None, None),
            (Some("lots"), None, None),
            (None, Some("sqrt"), None),
            (None, None, Some("epoch")),
        ] {
            assert!(View::parse(s, y, x).is_err(), "{s:?} {y:?} {x:?}");
        }
        let controls = View::parse(Some("0.77"), None, Some("time"))
            .unwrap()
            .controls();
        let smooth = &controls[0].2;
        assert_eq!(smooth.len(), SMOOTH_CHOICES.len() + 1);
        assert_eq!(smooth.iter().filter(|o| o.selected).count(), 1);
        assert_eq!(smooth[0].label, "off");
        let x: Vec<&str> = controls[2]
            .2
            .iter()
            .filter(|o| o.selected)
            .map(|o| o.value.as_str())
            .collect();
        assert_eq!(x, ["time"]);
    }

    #[test]
    fn the_lines_drawn_include_the_layers_of_findings() {
        let keys: Vec<(String, String)> = (0..20)
            .map(|i| (format!("l{i}"), format!("grad_norm/l{i}")))
            .collect();
        let picked = pick_layers(&keys, 4, &["l5".into()]);
        let layers: Vec<&str> = picked.iter().map(|k| k.0.as_str()).collect();
        assert_eq!(layers.len(), 4);
        assert!(layers.contains(&"l5") && layers[0] == "l0");
        assert_eq!(pick_layers(&keys[..3], 8, &[]).len(), 3);
    }

    fn ctx(view: View) -> PageCtx {
        PageCtx {
            run: uuid::Uuid::nil(),
            created_at: 1000.0,
            markers: vec![Marker {
                step: 5,
                label: "divergence".into(),
            }],
            layers: Vec::new(),
            view,
            order: Vec::new(),
        }
    }

    fn pts(n: u64, timed: bool) -> Vec<Point> {
        (0..n)
            .map(|s| Point {
                step: s,
                value: if s == 7 {
                    f64::NAN
                } else {
                    2.0 - s as f64 * 0.1
                },
                time: timed.then_some(1000.0 + s as f64 * 60.0),
            })
            .collect()
    }

    #[test]
    fn charts_on_a_time_axis_or_by_step() {
        let data = vec![("train/loss".to_string(), pts(10, true))];
        let time = View {
            x: XAxis::Time,
            ..View::default()
        };
        let svg = draw(ChartId::Loss, &data, &ctx(time)).unwrap();
        assert!(svg.contains("time since start"));
        assert!(
            svg.contains("0:05:00"),
            "the onset at step 5 is 5 min in, a tick"
        );
        assert!(svg.contains("divergence") && svg.contains("NaN / Inf"));
        let untimed = vec![("train/loss".to_string(), pts(10, false))];
        let svg = draw(ChartId::Loss, &untimed, &ctx(time)).unwrap();
        assert!(svg.contains("no time axis") && !svg.contains("time since start"));
        let svg = draw(ChartId::Loss, &data, &ctx(View::default())).unwrap();
        assert!(svg.contains("\nstep\n"), "the axis title");
        assert!(draw(ChartId::Loss, &[], &ctx(View::default())).is_none());
    }
}
