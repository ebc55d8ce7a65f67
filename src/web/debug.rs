//! The run page's debugging charts: gradient flow (a layers × steps heatmap
//! of gradient norms beside per-layer lines), update ratios with their
//! healthy band, dead and saturated fractions, and histograms over time.
//! Loads envelope reads (never every point) and hands them to `charts`.

use super::charts::{self, ChartId, ChartView, LINE_LAYERS, PageCtx, pick_layers};
use crate::charts::axis::by_step;
use crate::charts::distributions::{self, Hist, RIDGE_ROWS};
use crate::charts::heatmap::{self, Bins, Heatmap, Row, Scale};
use crate::charts::layers::{sort_layers, spread};
use crate::charts::svg::Marker;
use crate::diagnostics::names::{HISTOGRAM_PREFIXES, Role, classify, histogram_layer};
use crate::http::{AppError, AppState, PageError};
use crate::model::{Point, SeriesInfo};
use crate::record::HistogramRecord;
use crate::store::StoreError;

/// Heatmap columns at most: with the labels, 3–4 px a column on a 900 px
/// chart.
const HEAT_COLS: usize = 200;
// Points read per layer: the envelope of as many buckets as columns (four
// points each), about one a pixel, shared by the heatmap and the lines.
/// Per-layer series longer than this are read from their chunks' stored
/// envelopes (see [`heat_cols`]) rather than decoded whole.
const LONG_SERIES: i64 = 16_384;
/// Envelope reads in flight at once for one page.
const READ_PARALLEL: usize = 4;
/// Layers in a heatmap at most (evenly spread beyond).
const HEAT_LAYERS: usize = 128;
/// Histogram steps shown at most (TensorBoard keeps 500 too).
const HIST_STEPS: usize = 500;
const WIDTH: u32 = 900;

/// What the page shows below the metrics.
#[derive(Default)]
pub struct Debugging {
    pub grad_heatmap: Option<HeatView>,
    pub grad_lines: Option<ChartView>,
    pub updates: Option<ChartView>,
    /// Dead and saturated fraction heatmaps.
    pub units: Vec<HeatView>,
    pub hist: Distributions,
}

/// A heatmap on the page, with its downloads.
pub struct HeatView {
    pub anchor: String,
    pub svg: String,
    pub svg_href: String,
    pub csv_href: String,
}

/// The run page's heatmaps, by their downloads' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heat {
    GradFlow,
    DeadUnits,
    SaturatedUnits,
}

impl Heat {
    pub fn slug(self) -> &'static str {
        match self {
            Heat::GradFlow => "grad-flow",
            Heat::DeadUnits => ChartId::DeadUnits.slug(),
            Heat::SaturatedUnits => ChartId::SaturatedUnits.slug(),
        }
    }

    pub fn by_slug(slug: &str) -> Option<Heat> {
        [Heat::GradFlow, Heat::DeadUnits, Heat::SaturatedUnits]
            .into_iter()
            .find(|h| h.slug() == slug)
    }

    fn role(self) -> Role {
        match self {
            Heat::GradFlow => Role::GradNorm,
            Heat::DeadUnits => Role::DeadFrac,
            Heat::SaturatedUnits => Role::SatFrac,
        }
    }

    /// The empty state (static HTML).
    pub fn empty(self) -> &'static str {
        match self {
            Heat::GradFlow => ChartId::GradNorm.empty(),
            Heat::DeadUnits => ChartId::DeadUnits.empty(),
            Heat::SaturatedUnits => ChartId::SaturatedUnits.empty(),
        }
    }

    fn view(self, ctx: &PageCtx, svg: String) -> HeatView {
        let src = format!("/runs/{}/charts/{}", ctx.run, self.slug());
        HeatView {
            anchor: match self {
                Heat::GradFlow => "chart-grad-flow".into(),
                Heat::DeadUnits => ChartId::DeadUnits.anchor(),
                Heat::SaturatedUnits => ChartId::SaturatedUnits.anchor(),
            },
            svg,
            svg_href: format!("{src}.svg"),
            csv_href: format!("{src}.csv"),
        }
    }
}

/// A heatmap and the envelope reads it is drawn from (its CSV).
pub struct HeatChart {
    pub svg: Option<String>,
    pub reads: Vec<Read>,
}

/// The distribution charts, by their downloads' names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// Percentile bands over the steps.
    Bands,
    /// A few steps' histograms stacked.
    Ridge,
}

impl Dist {
    pub fn slug(self) -> &'static str {
        match self {
            Dist::Bands => "distribution",
            Dist::Ridge => "histograms",
        }
    }

    pub fn by_slug(slug: &str) -> Option<Dist> {
        [Dist::Bands, Dist::Ridge]
            .into_iter()
            .find(|d| d.slug() == slug)
    }
}

/// One histogram key's charts and the records they are drawn from.
pub struct DistChart {
    pub records: Vec<HistogramRecord>,
    pub bands: Option<String>,
    pub ridge: Option<String>,
    pub nonfinite: Option<String>,
}

/// The histogram key picker and the selected key's charts.
#[derive(Default)]
pub struct Distributions {
    /// The keys by family (`weights`, …).
    pub keys: Vec<(&'static str, Vec<KeyLink>)>,
    pub current: Option<String>,
    pub bands: Option<String>,
    pub ridge: Option<String>,
    pub nonfinite: Option<String>,
    /// The downloads of the current key's charts: bands SVG, histograms SVG,
    /// CSV.
    pub downloads: Option<(String, String, String)>,
}

/// One link of the histogram key picker.
pub struct KeyLink {
    pub key: String,
    pub layer: String,
    pub selected: bool,
}

/// `(layer, key)` of the per-layer series with `role`, input side first.
pub(super) fn layer_keys(
    series: &[SeriesInfo],
    role: Role,
    order: &[String],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = series
        .iter()
        .filter_map(|s| {
            let m = classify(&s.key)?;
            let layer = m.layer.filter(|_| m.role == role)?;
            Some((layer, s.key.clone()))
        })
        .collect();
    sort_layers(&mut out, order);
    out
}

/// One layer's envelope read.
pub(super) struct Read {
    pub layer: String,
    pub key: String,
    pub points: Vec<Point>,
}

impl Read {
    fn row(&self) -> Row {
        Row {
            label: self.layer.clone(),
            points: by_step(&self.points),
        }
    }
}

/// The envelope reads of `keys` (`(layer, key)`), in order, at most
/// [`READ_PARALLEL`] at a time: each decodes its chunks, so a page of many
/// long per-layer series uses both cores rather than one.
pub(super) async fn read_rows(
    state: &AppState,
    run: uuid::Uuid,
    keys: &[(String, String)],
    max_points: usize,
) -> Result<Vec<Read>, PageError> {
    let mut rows: Vec<Option<Read>> = (0..keys.len()).map(|_| None).collect();
    let mut set = tokio::task::JoinSet::new();
    let mut next = 0;
    loop {
        while set.len() < READ_PARALLEL && next < keys.len() {
            let (i, (layer, key)) = (next, keys[next].clone());
            let store = state.store.clone();
            set.spawn(async move {
                let read = store.downsampled(run, &key, None, None, max_points).await?;
                Ok::<_, StoreError>((
                    i,
                    read.map(|s| Read {
                        layer,
                        key,
                        points: s.points,
                    }),
                ))
            });
            next += 1;
        }
        let Some(done) = set.join_next().await else {
            break;
        };
        let (i, row) = done.map_err(|e| AppError::Internal(format!("chart read: {e}")))??;
        rows[i] = row;
    }
    Ok(rows.into_iter().flatten().collect())
}

fn rows_of(reads: &[Read]) -> Vec<Row> {
    spread(reads.iter().map(Read::row).collect(), HEAT_LAYERS)
}

fn unit_heatmap(
    title: &str,
    desc: &str,
    rows: &[Read],
    bins: Option<Bins>,
    markers: &[Marker],
) -> Option<String> {
    let rows = rows_of(rows);
    heatmap::heatmap_marked(
        &Heatmap {
            title,
            desc,
            legend: "fraction of units (0–1)",
            rows: &rows,
            scale: Some(Scale::Linear { lo: 0.0, hi: 1.0 }),
            max_cols: HEAT_COLS,
            bins,
            width: WIDTH,
        },
        markers,
    )
}

/// Points to read per layer and the heatmap's columns for per-layer series
/// like `series`: [`HEAT_COLS`] equal bins, but when one is long (a point
/// every step of a long run), columns a whole number of chunks wide, aligned
/// on chunks, so that the store answers from the chunks' stored envelopes
/// (one bucket a column) instead of decoding every point of every layer.
pub(super) fn layer_bins(series: &[SeriesInfo]) -> (usize, Option<Bins>) {
    let chunk = crate::store::chunk::CHUNK_STEPS;
    let long = series
        .iter()
        .filter(|s| s.count > LONG_SERIES)
        .filter_map(|s| Some((s.first_step?, s.last_step?)))
        .filter(|(f, l)| l - f >= 4 * chunk);
    let (Some(first), Some(last)) = (long.clone().map(|r| r.0).min(), long.map(|r| r.1).max())
    else {
        return (HEAT_COLS * 4, None);
    };
    let span = last - first + 1;
    let width = chunk * span.div_ceil(HEAT_COLS as u64 * chunk);
    let origin = first - first % chunk;
    let cols = (last - origin + 1).div_ceil(width) as usize;
    (
        cols * 4,
        Some(Bins {
            first: origin,
            width,
            cols,
        }),
    )
}

/// The series of a run that belong to a layer.
pub(super) fn per_layer(series: &[SeriesInfo]) -> Vec<SeriesInfo> {
    series
        .iter()
        .filter(|s| classify(&s.key).is_some_and(|m| m.layer.is_some()))
        .cloned()
        .collect()
}

/// `which` heatmap of a run with `series`.
pub async fn heat(
    state: &AppState,
    series: &[SeriesInfo],
    ctx: &PageCtx,
    which: Heat,
) -> Result<HeatChart, PageError> {
    let (points, bins) = layer_bins(&per_layer(series));
    let keys = layer_keys(series, which.role(), &ctx.order);
    let reads = read_rows(state, ctx.run, &keys, points).await?;
    let svg = match which {
        Heat::GradFlow if !reads.is_empty() => {
            let rows = rows_of(&reads);
            heatmap::heatmap_marked(
                &Heatmap {
                    title: "Gradient flow: ‖∇w‖ per layer",
                    desc: &format!(
                        "Heatmap of the gradient norm of {} layers (rows, input side on top) over the steps (columns), log colour scale; NaN and Inf cells in magenta",
                        rows.len()
                    ),
                    legend: "‖∇w‖ (log scale)",
                    rows: &rows,
                    scale: None,
                    max_cols: HEAT_COLS,
                    bins,
                    width: WIDTH,
                },
                &ctx.markers,
            )
        }
        Heat::GradFlow => None,
        units => {
            let (chart, desc) = if units == Heat::DeadUnits {
                (
                    ChartId::DeadUnits,
                    "Heatmap of the share of ReLU units that never fire, per layer (rows, input side on top) over the steps, 0 to 1",
                )
            } else {
                (
                    ChartId::SaturatedUnits,
                    "Heatmap of the share of saturated sigmoid or tanh outputs, per layer (rows, input side on top) over the steps, 0 to 1",
                )
            };
            unit_heatmap(chart.title(), desc, &reads, bins, &ctx.markers)
        }
    };
    Ok(HeatChart { svg, reads })
}

pub async fn debugging(
    state: &AppState,
    series: &[SeriesInfo],
    ctx: &PageCtx,
    hist: Option<&str>,
) -> Result<Debugging, PageError> {
    let (run, order) = (ctx.run, &ctx.order);
    let mut out = Debugging::default();

    let grads = heat(state, series, ctx, Heat::GradFlow).await?;
    if !grads.reads.is_empty() {
        out.grad_heatmap = grads.svg.map(|svg| Heat::GradFlow.view(ctx, svg));
        // The lines: some of the layers just read (as `charts::load` picks).
        let keys: Vec<(String, String)> = grads
            .reads
            .iter()
            .map(|r| (r.layer.clone(), r.key.clone()))
            .collect();
        let picked = pick_layers(&keys, LINE_LAYERS, &ctx.layers);
        let lines: Vec<(String, Vec<Point>)> = grads
            .reads
            .into_iter()
            .filter(|r| picked.iter().any(|(_, k)| *k == r.key))
            .map(|r| (r.key, r.points))
            .collect();
        let svg = charts::draw(ChartId::GradNorm, &lines, ctx);
        out.grad_lines = Some(ChartView::new(ChartId::GradNorm, ctx, svg));
    }

    // Only the lines are drawn: read only the layers they show.
    let updates = charts::load(state, ChartId::UpdateRatio, series, ctx).await?;
    if let Some(svg) = charts::draw(ChartId::UpdateRatio, &updates, ctx) {
        out.updates = Some(ChartView::new(ChartId::UpdateRatio, ctx, Some(svg)));
    }

    for which in [Heat::DeadUnits, Heat::SaturatedUnits] {
        if let Some(svg) = heat(state, series, ctx, which).await?.svg {
            out.units.push(which.view(ctx, svg));
        }
    }

    out.hist = distributions(state, run, order, hist).await?;
    Ok(out)
}

/// The charts of histogram `key` of `run`: at most [`HIST_STEPS`] steps,
/// evenly spread.
pub async fn distribution(
    state: &AppState,
    run: uuid::Uuid,
    key: &str,
) -> Result<DistChart, PageError> {
    let records = state.store.histograms(run, Some(key)).await?;
    let records = spread(records, HIST_STEPS);
    let hists: Vec<Hist> = records
        .iter()
        .map(|h| Hist {
            step: h.step,
            edges: &h.edges,
            counts: &h.counts,
            nonfinite: h.nonfinite,
        })
        .collect();
    let bands = distributions::bands_chart(&format!("{key}: distribution"), &hists, (WIDTH, 320));
    let ridge = distributions::ridgeline(&format!("{key}: histograms"), &hists, RIDGE_ROWS, WIDTH);
    let nonfinite = distributions::nonfinite_caption(&hists);
    Ok(DistChart {
        records,
        bands,
        ridge,
        nonfinite,
    })
}

async fn distributions(
    state: &AppState,
    run: uuid::Uuid,
    order: &[String],
    wanted: Option<&str>,
) -> Result<Distributions, PageError> {
    // (layer, (family, key)): by family, then input side first.
    let mut sorted: Vec<(String, (usize, String))> = state
        .store
        .histogram_keys(run)
        .await?
        .into_iter()
        .filter_map(|k| {
            let (family, layer) = histogram_layer(&k.key)?;
            Some((layer.to_string(), (family, k.key)))
        })
        .collect();
    sort_layers(&mut sorted, order);
    sorted.sort_by_key(|(_, (f, _))| *f);
    let current = wanted
        .filter(|w| sorted.iter().any(|(_, (_, k))| k == w))
        .map(str::to_string)
        .or_else(|| sorted.first().map(|(_, (_, k))| k.clone()));
    let mut out = Distributions {
        keys: HISTOGRAM_PREFIXES
            .iter()
            .enumerate()
            .map(|(f, prefix)| {
                let keys: Vec<KeyLink> = sorted
                    .iter()
                    .filter(|(_, (family, _))| *family == f)
                    .map(|(layer, (_, k))| KeyLink {
                        key: k.clone(),
                        layer: layer.clone(),
                        selected: current.as_deref() == Some(k.as_str()),
                    })
                    .collect();
                (prefix.trim_end_matches('/'), keys)
            })
            .filter(|(_, keys)| !keys.is_empty())
            .collect(),
        ..Distributions::default()
    };
    let Some(key) = current else {
        return Ok(out);
    };
    let dist = distribution(state, run, &key).await?;
    out.bands = dist.bands;
    out.ridge = dist.ridge;
    out.nonfinite = dist.nonfinite;
    let q = |slug: &str, ext: &str| {
        format!(
            "/runs/{run}/charts/{slug}.{ext}?hist={}",
            form_urlencoded::byte_serialize(key.as_bytes()).collect::<String>()
        )
    };
    out.downloads = Some((
        q(Dist::Bands.slug(), "svg"),
        q(Dist::Ridge.slug(), "svg"),
        q(Dist::Bands.slug(), "csv"),
    ));
    out.current = Some(key);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(key: &str, count: i64, last: u64) -> SeriesInfo {
        SeriesInfo {
            key: key.into(),
            count,
            first_step: Some(0),
            last_step: Some(last),
            last_value: None,
        }
    }

    #[test]
    fn long_layer_series_get_chunk_wide_columns() {
        assert_eq!(
            layer_bins(&[info("grad_norm/a", 500, 5_000)]),
            (HEAT_COLS * 4, None)
        );
        // 100k points a layer: a column per chunk, read from the envelopes.
        let (points, bins) = layer_bins(&[info("grad_norm/a", 100_000, 99_999)]);
        let bins = bins.unwrap();
        assert_eq!((bins.first, bins.width, bins.cols), (0, 4096, 25));
        assert_eq!(points, 100);
        let (_, raw) = crate::charts::downsample::buckets(0, 99_999, points, 1);
        assert!(
            (3072..=4096).contains(&raw),
            "the store takes its envelope path: {raw}"
        );
        let (_, bins) = layer_bins(&[info("grad_norm/a", 10_000_000, 9_999_999)]);
        let bins = bins.unwrap();
        assert!(bins.cols <= HEAT_COLS && bins.width % 4096 == 0);
    }
}
