//! The run page's views of what a run logged beside its curves: a weight
//! heatmap of a `tensor` record, the channels of a feature map (`image`
//! records), the dataset panel (class counts, feature shift, missing cells)
//! and the model panel (the layer table, with the findings about a layer
//! beside it).
//!
//! Loading reads the key lists and the chosen key's steps (index-only
//! queries), then one record: the chosen step's, never every step's. The
//! view models are built by pure functions below (tested without a
//! database); `charts` draws.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::charts::bars::{self, BarSeries};
use crate::charts::feature_map;
use crate::charts::layers::{sort_layers, spread};
use crate::charts::raster::{self, png_data_url};
use crate::charts::svg::format_value;
use crate::charts::weights;
use crate::csv_export;
use crate::diagnostics::data::SHIFT_SMD;
use crate::diagnostics::predictions;
use crate::diagnostics::{RunView, fmt_step};
use crate::http::{AppError, AppState, PageError, PageRunId, Query};
use crate::model::{FindingStatus, HistogramKey};
use crate::record::{DatasetRecord, ImageRecord, ModelRecord, Record, TensorRecord};
use crate::store::findings::StoredFinding;
use crate::store::records::StepKind;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/runs/{id}/image.png", get(image_png))
        .route(
            "/static/views.js",
            super::asset("text/javascript", include_str!("../../static/views.js")),
        )
}

const WIDTH: u32 = 900;
/// Steps listed in the tensor step picker at most (evenly spread, the
/// chosen and the latest always in).
const STEP_CHOICES: usize = 200;
/// Tick marks under the feature-map slider at most.
const SLIDER_TICKS: usize = 50;
/// Classes drawn in the class-count chart at most (the largest).
const MAX_CLASSES: usize = 40;
/// Feature rows of the shift table at most (the most shifted).
const SHIFT_ROWS: usize = 20;
/// A std ratio this far from 1 (either way) flags a feature, as in
/// `diagnostics::data`.
const SHIFT_RATIO: f64 = 2.0;
/// Layer rows of the model table at most.
const MAX_LAYERS: usize = 500;

/// What the page's query picks for these views (raw, as given).
#[derive(Debug, Default, Clone)]
pub struct Pick {
    pub hist: Option<String>,
    pub tensor: Option<String>,
    pub tensor_step: Option<String>,
    pub image: Option<String>,
    pub image_step: Option<String>,
    /// The line charts' view, kept by the views' forms and links.
    pub smooth: Option<String>,
    pub y: Option<String>,
    pub x: Option<String>,
    /// The predictions panel's split.
    pub pred: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// A whole number ≥ 0 (`what`: "a step") of the query's `field`, if given.
fn whole_of(field: &str, v: &Option<String>, what: &str) -> Result<Option<u64>, AppError> {
    given(v)
        .map(|s| {
            s.parse::<u64>().map_err(|_| {
                AppError::bad_request(
                    "invalid_query",
                    field.to_string(),
                    format!("{field} {s:?} is not {what} (a whole number ≥ 0)"),
                )
            })
        })
        .transpose()
}

fn step_of(field: &str, v: &Option<String>) -> Result<Option<u64>, AppError> {
    whole_of(field, v, "a step")
}

impl Pick {
    fn pairs(&self) -> [(&'static str, Option<&str>); 9] {
        [
            ("hist", given(&self.hist)),
            ("tensor", given(&self.tensor)),
            ("tensor_step", given(&self.tensor_step)),
            ("image", given(&self.image)),
            ("image_step", given(&self.image_step)),
            ("smooth", given(&self.smooth)),
            ("y", given(&self.y)),
            ("x", given(&self.x)),
            ("pred", given(&self.pred)),
        ]
    }

    /// The other views' parameters, as hidden fields of a form that sets
    /// `own` (so that picking a step keeps the rest of the page as it was).
    pub fn hidden(&self, own: &[&str]) -> Vec<(&'static str, String)> {
        self.pairs()
            .into_iter()
            .filter(|(k, _)| !own.contains(k))
            .filter_map(|(k, v)| Some((k, v?.to_string())))
            .collect()
    }

    /// This page with `name` set to `value` and `clear` left out, then
    /// `#anchor`.
    fn href(&self, name: &str, value: &str, clear: &str, anchor: &str) -> String {
        let mut ser = form_urlencoded::Serializer::new(String::new());
        for (k, v) in self.pairs() {
            if k == name {
                ser.append_pair(k, value);
            } else if k != clear
                && let Some(v) = v
            {
                ser.append_pair(k, v);
            }
        }
        format!("?{}#{anchor}", ser.finish())
    }
}

/// Everything below the distributions.
#[derive(Default)]
pub struct Views {
    pub weights: StepView,
    pub features: StepView,
    pub dataset: DatasetPanel,
    pub model: ModelPanel,
    pub predictions: super::predictions::PredictionsPanel,
}

/// A key of the picker.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLink {
    pub key: String,
    pub label: String,
    pub href: String,
    pub selected: bool,
}

/// A view of one key of step records at one step: the weight heatmap or
/// the feature maps.
#[derive(Default)]
pub struct StepView {
    pub keys: Vec<KeyLink>,
    pub key: Option<String>,
    /// The steps of the key, at most [`STEP_CHOICES`], newest first, for
    /// the tensor step picker: (step, selected).
    pub choices: Vec<(u64, bool)>,
    /// The slider's range: first, last, stride (every step is
    /// `first + k·stride`), and its tick marks.
    pub first: u64,
    pub last: u64,
    pub stride: u64,
    pub ticks: Vec<u64>,
    pub count: usize,
    pub step: Option<u64>,
    /// Why the step or key shown is not the one asked for.
    pub note: Option<String>,
    /// The other views' query parameters, for the step form.
    pub hidden: Vec<(&'static str, String)>,
    /// The weight heatmap (SVG escaped in `charts::weights`).
    pub chart: Option<String>,
    /// Facts about the record: (name, value).
    pub facts: Vec<(&'static str, String)>,
    /// A warning line (non-finite values), when there is one.
    pub bad: Option<String>,
    /// The feature maps: one cell per channel (or the PNG).
    pub cells: Vec<MapCell>,
    /// Channels not drawn.
    pub more: usize,
    /// The downloads of what is shown, `(label, href)`, and what they hold.
    pub downloads: Vec<(&'static str, String)>,
    pub downloads_note: &'static str,
}

/// Where the downloads of one record of a view are: the download route
/// with the record's key and step as the page names them (see
/// [`download`]).
pub struct Files {
    run: uuid::Uuid,
    query: String,
}

impl Files {
    pub fn new(run: uuid::Uuid, key: (&str, &str), step: (&str, u64)) -> Files {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair(key.0, key.1)
            .append_pair(step.0, &step.1.to_string())
            .finish();
        Files { run, query }
    }

    /// `/runs/{run}/charts/{file}?{key and step}`.
    pub fn href(&self, file: &str) -> String {
        format!("/runs/{}/charts/{file}?{}", self.run, self.query)
    }
}

/// One channel of a feature map, or a logged PNG.
#[derive(Debug, Clone, PartialEq)]
pub struct MapCell {
    pub label: String,
    /// A `data:` URL of the channel, or the route serving the PNG.
    pub src: String,
    pub alt: String,
    pub range: String,
    pub width: usize,
    pub height: usize,
    pub nonfinite: usize,
    pub constant: bool,
    /// A logged picture, drawn at its size rather than scaled up.
    pub picture: bool,
    /// The cell's PNG as a download.
    pub download: String,
}

/// The step shown: the latest at or before the one asked for (the first
/// when it is before them all), the latest without one.
pub fn pick_step(steps: &[u64], asked: Option<u64>) -> Option<u64> {
    let last = *steps.last()?;
    Some(match asked {
        None => last,
        Some(a) => {
            let i = steps.partition_point(|s| *s <= a);
            if i == 0 { steps[0] } else { steps[i - 1] }
        }
    })
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// The slider's stride: the greatest common divisor of the gaps (200 for
/// steps 0, 200, 400…), so that it stops on every logged step.
pub fn stride(steps: &[u64]) -> u64 {
    let first = steps.first().copied().unwrap_or(0);
    steps.iter().map(|s| s - first).fold(0, gcd).max(1)
}

/// `(layer, key)`: the part of a key after its first `/`, model order first.
fn sorted_keys(keys: Vec<String>, order: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = keys
        .into_iter()
        .map(|k| {
            let layer = k.split_once('/').map_or(k.as_str(), |(_, l)| l).to_string();
            (layer, k)
        })
        .collect();
    sort_layers(&mut out, order);
    out
}

/// The key picker and the step controls of one view, before its record.
fn step_view(
    keys: Vec<String>,
    order: &[String],
    prefer: &str,
    wanted: Option<&str>,
    pick: &Pick,
    (key_param, step_param, anchor): (&'static str, &'static str, &str),
) -> StepView {
    let sorted = sorted_keys(keys, order);
    let found = wanted.filter(|w| sorted.iter().any(|(_, k)| k == w));
    let key = found.map(str::to_string).or_else(|| {
        sorted
            .iter()
            .find(|(_, k)| k.starts_with(prefer))
            .or(sorted.first())
            .map(|(_, k)| k.clone())
    });
    let note = match (wanted, found, &key) {
        (Some(w), None, Some(k)) => Some(format!("This run has no key “{w}”: showing {k}.")),
        _ => None,
    };
    StepView {
        keys: sorted
            .iter()
            .map(|(layer, k)| KeyLink {
                href: pick.href(key_param, k, step_param, anchor),
                selected: key.as_deref() == Some(k.as_str()),
                label: if k.starts_with(prefer) {
                    layer.clone()
                } else {
                    k.clone()
                },
                key: k.clone(),
            })
            .collect(),
        key,
        note,
        hidden: pick.hidden(&[key_param, step_param]),
        ..StepView::default()
    }
}

impl StepView {
    /// Fills the step controls from the key's steps; returns the step to load.
    fn set_steps(&mut self, steps: &[u64], asked: Option<u64>) -> Option<u64> {
        let step = pick_step(steps, asked)?;
        if let Some(a) = asked.filter(|a| *a != step) {
            self.note = Some(format!(
                "Step {a} has no record of this key: showing step {step}."
            ));
        }
        self.step = Some(step);
        self.count = steps.len();
        self.first = steps[0];
        self.last = *steps.last().expect("not empty");
        self.stride = stride(steps);
        self.ticks = spread(steps.to_vec(), SLIDER_TICKS);
        let mut choices = spread(steps.to_vec(), STEP_CHOICES);
        if !choices.contains(&step) {
            choices.push(step);
            choices.sort_unstable();
        }
        self.choices = choices.into_iter().rev().map(|s| (s, s == step)).collect();
        Some(step)
    }
}

fn shape_text(shape: &[u64]) -> String {
    shape
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" × ")
}

/// The weight heatmap of a tensor record, `None` when its values do not
/// fill its shape.
fn weight_chart(t: &TensorRecord) -> Option<weights::WeightHeatmap> {
    let values: Vec<f64> = t.values.iter().map(|v| v.0).collect();
    let title = format!("{} at step {}", t.key, t.step);
    weights::weight_heatmap(&title, &t.shape, &values, WIDTH)
}

/// The note of a record whose values do not fill its shape.
fn unfilled(values: usize, shape: &[u64]) -> String {
    format!(
        "The record's {values} values do not fill its shape {}.",
        shape_text(shape)
    )
}

/// The weight heatmap of a tensor record, the facts beside it and its
/// downloads in `files`.
pub fn weight_view(view: &mut StepView, t: &TensorRecord, files: &Files) {
    let Some(h) = weight_chart(t) else {
        view.note = Some(unfilled(t.values.len(), &t.shape));
        return;
    };
    view.facts.push(("shape", shape_text(&t.shape)));
    if t.shape.len() > 2 {
        view.facts.push((
            "drawn as",
            format!(
                "{} rows × {} columns (the first dimension as rows)",
                h.matrix.0, h.matrix.1
            ),
        ));
    }
    if let Some(sample) = &t.sample {
        view.facts.push(("sample", sample.clone()));
    }
    view.facts.push((
        "values",
        h.range.map_or("none finite".into(), |(lo, hi)| {
            format!("{} to {}", format_value(lo), format_value(hi))
        }),
    ));
    view.facts.push((
        "colour scale",
        format!(
            "−{0} to +{0}{1}, white at 0",
            format_value(h.limit),
            if h.block == (1, 1) {
                ""
            } else {
                " (the largest cell mean)"
            }
        ),
    ));
    if h.block != (1, 1) {
        view.facts.push((
            "cells",
            format!(
                "{} × {}, each the mean of {} × {} values",
                h.cells.0, h.cells.1, h.block.0, h.block.1
            ),
        ));
    }
    view.bad = raster::nonfinite_text(h.nonfinite)
        .map(|t| format!("{t} among the values (magenta cells)"));
    view.chart = Some(h.svg);
    view.downloads = vec![
        ("SVG", files.href("weights.svg")),
        ("CSV", files.href("weights.csv")),
    ];
    view.downloads_note = "the values as logged, one a row";
}

/// The cells of an image record: a channel each, or the logged PNG through
/// `png_href`; their downloads in `files`.
pub fn feature_view(view: &mut StepView, img: &ImageRecord, png_href: &str, files: &Files) {
    let png = files.href("feature-map.png");
    if img.png.is_some() {
        view.facts.push(("image", "PNG as logged".into()));
        view.downloads = vec![("PNG", png.clone())];
        view.downloads_note = "the picture as logged";
        view.cells.push(MapCell {
            label: format!("step {}", img.step),
            src: png_href.to_string(),
            alt: format!("{} at step {}", img.key, img.step),
            range: String::new(),
            width: 0,
            height: 0,
            nonfinite: 0,
            constant: false,
            picture: true,
            download: png,
        });
        return;
    }
    let (Some(shape), Some(values)) = (&img.shape, &img.values) else {
        return;
    };
    let values: Vec<f64> = values.iter().map(|v| v.0).collect();
    let Some(channels) = feature_map::channels(shape, &values) else {
        view.note = Some(unfilled(values.len(), shape));
        return;
    };
    let total = if shape.len() == 3 {
        shape[0] as usize
    } else {
        1
    };
    view.more = total - channels.len();
    view.facts.push(("shape", shape_text(shape)));
    if let Some(c) = channels.first().filter(|c| c.block != (1, 1)) {
        view.facts.push((
            "drawn",
            format!(
                "{} × {} px a channel, each the mean of {} × {} values",
                c.height, c.width, c.block.0, c.block.1
            ),
        ));
    }
    let bad: usize = channels.iter().map(|c| c.nonfinite).sum();
    if bad > 0 {
        view.bad = Some(format!("{bad} NaN or Inf values (magenta pixels)"));
    }
    view.cells = channels
        .into_iter()
        .map(|c| MapCell {
            label: format!("channel {}", c.index),
            src: png_data_url(&c.png),
            alt: format!(
                "{} channel {} at step {}, {} by {} pixels, black at its minimum and white at its maximum",
                img.key, c.index, img.step, c.height, c.width
            ),
            range: match c.range {
                Some((lo, hi)) if lo == hi => format!("constant {}", format_value(lo)),
                Some((lo, hi)) => format!("{} … {}", format_value(lo), format_value(hi)),
                None => "no finite value".into(),
            },
            width: c.width,
            height: c.height,
            nonfinite: c.nonfinite,
            constant: c.constant(),
            picture: false,
            download: format!("{png}&channel={}", c.index),
        })
        .collect();
    view.downloads = vec![("CSV", files.href("feature-map.csv"))];
    view.downloads_note = "every channel's values, one a row; a channel's PNG under it";
}

/// The dataset panel.
#[derive(Default)]
pub struct DatasetPanel {
    pub splits: Vec<SplitRow>,
    pub classes_chart: Option<String>,
    pub classes_note: Option<String>,
    /// The splits compared in the shift table (train, validation).
    pub shift_pair: Option<(String, String)>,
    pub shift: Vec<ShiftRow>,
    pub shift_note: Option<String>,
    /// Why the shift table is missing although both splits are there.
    pub shift_missing: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SplitRow {
    pub split: String,
    pub n: String,
    pub features: String,
    pub missing: String,
    pub missing_bad: bool,
    pub classes: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShiftRow {
    pub feature: usize,
    pub train: String,
    pub val: String,
    /// Standardised mean difference (val − train) / train std.
    pub smd: String,
    pub ratio: String,
    pub shifted: bool,
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

fn class_counts(d: &DatasetRecord) -> Vec<(String, f64)> {
    d.class_counts
        .iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_f64().filter(|x| x.is_finite())?)))
        .collect()
}

/// The dataset panel from the run's dataset summaries.
pub fn dataset_panel(datasets: Vec<DatasetRecord>) -> DatasetPanel {
    let mut panel = DatasetPanel::default();
    if datasets.is_empty() {
        return panel;
    }
    let view = RunView {
        datasets,
        ..RunView::default()
    };
    let train = view.dataset("train");
    let val = view.dataset("val");
    // Train, validation, then the other splits by name.
    let mut ordered: Vec<&DatasetRecord> = train.into_iter().chain(val).collect();
    for d in &view.datasets {
        if !ordered.iter().any(|o| std::ptr::eq(*o, d)) {
            ordered.push(d);
        }
    }
    panel.splits = ordered
        .iter()
        .map(|d| {
            let cells =
                d.n.zip(d.n_features)
                    .map(|(n, f)| n.saturating_mul(f))
                    .filter(|c| *c > 0);
            SplitRow {
                split: d.split.clone(),
                n: opt(d.n),
                features: opt(d.n_features),
                missing: match (d.missing, cells) {
                    (Some(m), Some(c)) if m > 0 => {
                        format!("{m} ({:.2} % of cells)", m as f64 / c as f64 * 100.0)
                    }
                    (m, _) => opt(m),
                },
                missing_bad: d.missing.is_some_and(|m| m > 0),
                classes: d
                    .class_counts
                    .as_ref()
                    .map_or_else(String::new, |c| c.len().to_string()),
            }
        })
        .collect();

    // Class counts: the splits that have them, classes in the order sent.
    let with_counts: Vec<(&DatasetRecord, Vec<(String, f64)>)> = ordered
        .iter()
        .map(|d| (*d, class_counts(d)))
        .filter(|(_, c)| !c.is_empty())
        .take(4)
        .collect();
    if !with_counts.is_empty() {
        let mut classes: Vec<String> = Vec::new();
        for (_, counts) in &with_counts {
            for (k, _) in counts {
                if !classes.contains(k) {
                    classes.push(k.clone());
                }
            }
        }
        let total = classes.len();
        if total > MAX_CLASSES {
            // Keep the largest (by their share summed over the splits), in
            // the order sent.
            let weight = |k: &String| -> f64 {
                with_counts
                    .iter()
                    .map(|(_, c)| {
                        let n: f64 = c.iter().map(|x| x.1).sum();
                        c.iter()
                            .find(|x| &x.0 == k)
                            .map_or(0.0, |x| x.1 / n.max(1.0))
                    })
                    .sum()
            };
            let mut by_weight: Vec<(f64, usize)> = classes
                .iter()
                .enumerate()
                .map(|(i, k)| (weight(k), i))
                .collect();
            by_weight.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut keep: Vec<usize> = by_weight.iter().take(MAX_CLASSES).map(|x| x.1).collect();
            keep.sort_unstable();
            classes = keep.into_iter().map(|i| classes[i].clone()).collect();
            panel.classes_note = Some(format!("The {MAX_CLASSES} largest of {total} classes."));
        }
        let series: Vec<BarSeries> = with_counts
            .iter()
            .map(|(d, counts)| BarSeries {
                label: d.split.clone(),
                counts: classes
                    .iter()
                    .map(|k| counts.iter().find(|c| &c.0 == k).map(|c| c.1))
                    .collect(),
            })
            .collect();
        let names: Vec<&str> = with_counts.iter().map(|(d, _)| d.split.as_str()).collect();
        panel.classes_chart = bars::grouped_bars(
            "Class counts, share of each split",
            &format!(
                "Grouped bar chart of the share of each of {} classes in the {} splits",
                classes.len(),
                names.join(" and ")
            ),
            &classes,
            &series,
            WIDTH,
        );
    }

    if let (Some(t), Some(v)) = (train, val) {
        let f = |x: &Option<Vec<crate::record::Value>>| -> Option<Vec<f64>> {
            x.as_ref().map(|v| v.iter().map(|x| x.0).collect())
        };
        match (
            f(&t.feature_mean),
            f(&t.feature_std),
            f(&v.feature_mean),
            f(&v.feature_std),
        ) {
            (Some(mt), Some(st), Some(mv), Some(sv))
                if mt.len() == st.len() && mv.len() == mt.len() && sv.len() == mt.len() =>
            {
                panel.shift_pair = Some((t.split.clone(), v.split.clone()));
                let mut rows: Vec<(f64, ShiftRow)> = (0..mt.len())
                    .map(|j| {
                        let smd = if st[j].is_finite() && st[j] > 1e-12 {
                            (mv[j] - mt[j]) / st[j]
                        } else {
                            f64::NAN
                        };
                        let ratio = if st[j] > 1e-12 {
                            sv[j] / st[j]
                        } else {
                            f64::NAN
                        };
                        let shifted = smd.abs() >= SHIFT_SMD
                            || (ratio.is_finite()
                                && (ratio >= SHIFT_RATIO || ratio <= 1.0 / SHIFT_RATIO));
                        let pm =
                            |m: f64, s: f64| format!("{} ± {}", format_value(m), format_value(s));
                        (
                            smd.abs(),
                            ShiftRow {
                                feature: j,
                                train: pm(mt[j], st[j]),
                                val: pm(mv[j], sv[j]),
                                smd: if smd.is_finite() {
                                    format!("{smd:+.2}")
                                } else {
                                    "—".into()
                                },
                                ratio: if ratio.is_finite() {
                                    format!("{ratio:.2}×")
                                } else {
                                    "—".into()
                                },
                                shifted,
                            },
                        )
                    })
                    .collect();
                let flagged = rows.iter().filter(|r| r.1.shifted).count();
                // Most shifted first; a shift that cannot be measured last.
                rows.sort_by(|a, b| {
                    let key = |x: f64| if x.is_nan() { -1.0 } else { x };
                    key(b.0)
                        .total_cmp(&key(a.0))
                        .then(a.1.feature.cmp(&b.1.feature))
                });
                let n = rows.len();
                panel.shift = rows.into_iter().take(SHIFT_ROWS).map(|r| r.1).collect();
                panel.shift_note = Some(format!(
                    "{} of {n} features, the most shifted first; {flagged} flagged (|SMD| ≥ {SHIFT_SMD} or a std ratio of {SHIFT_RATIO}× either way).",
                    panel.shift.len()
                ));
            }
            _ => {
                panel.shift_missing = Some(format!(
                    "No feature shift: it needs feature_mean and feature_std of the same length in both {} and {}.",
                    t.split, v.split
                ));
            }
        }
    }
    panel
}

/// The model panel.
#[derive(Default)]
pub struct ModelPanel {
    pub present: bool,
    pub facts: Vec<(&'static str, String)>,
    pub layers: Vec<LayerRow>,
    pub more: usize,
    /// Findings about the model not tied to a listed layer.
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LayerRow {
    pub index: usize,
    pub name: String,
    pub kind: String,
    pub inputs: String,
    pub outputs: String,
    pub params: String,
    pub activation: String,
    pub trainable: &'static str,
    pub notes: Vec<Note>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Note {
    pub severity: &'static str,
    pub kind: &'static str,
    pub title: String,
    pub layer: Option<String>,
}

/// Finding kinds about the architecture, noted even without a layer.
const MODEL_KINDS: &[&str] = &[
    "loss_activation_mismatch",
    "dead_relu",
    "saturated_activations",
    "vanishing_gradients",
    "exploding_gradients",
    "unchanged_weights",
    "architecture",
    "hyperparameters",
];

/// The layer table, with each open finding about a layer on its row and
/// the other architecture findings above it.
pub fn model_panel(model: Option<&ModelRecord>, findings: &[StoredFinding]) -> ModelPanel {
    let Some(m) = model else {
        return ModelPanel::default();
    };
    let mut panel = ModelPanel {
        present: true,
        ..ModelPanel::default()
    };
    panel.facts.push(("layers", m.layers.len().to_string()));
    if let Some(p) = m.total_params {
        panel.facts.push(("parameters", fmt_step(p)));
    }
    if let Some(l) = &m.loss {
        panel.facts.push(("loss", l.clone()));
    }
    if let Some(o) = &m.optimizer {
        let mut parts: Vec<String> = o.name.iter().cloned().collect();
        for (name, v) in [
            ("lr", o.lr),
            ("momentum", o.momentum),
            ("weight decay", o.weight_decay),
        ] {
            if let Some(v) = v {
                parts.push(format!("{name} {}", format_value(v)));
            }
        }
        panel.facts.push(("optimizer", parts.join(", ")));
    }
    panel.layers = m
        .layers
        .iter()
        .take(MAX_LAYERS)
        .enumerate()
        .map(|(index, l)| LayerRow {
            index,
            name: l.name.clone(),
            kind: l.kind.clone().unwrap_or_default(),
            inputs: opt(l.inputs),
            outputs: opt(l.outputs),
            params: l.params.map_or_else(String::new, fmt_step),
            activation: l.activation.clone().unwrap_or_default(),
            trainable: match l.trainable {
                Some(true) => "yes",
                Some(false) => "frozen",
                None => "",
            },
            notes: Vec::new(),
        })
        .collect();
    panel.more = m.layers.len().saturating_sub(MAX_LAYERS);
    for f in findings.iter().filter(|f| f.status == FindingStatus::Open) {
        let note = Note {
            severity: f.finding.severity.as_str(),
            kind: f.finding.kind.as_str(),
            title: f.finding.title.clone(),
            layer: f.finding.evidence.layer.clone(),
        };
        let row = note
            .layer
            .as_ref()
            .and_then(|l| panel.layers.iter_mut().find(|r| &r.name == l));
        match row {
            Some(r) => r.notes.push(note),
            None if note.layer.is_some() || MODEL_KINDS.contains(&note.kind) => {
                panel.notes.push(note)
            }
            None => {}
        }
    }
    panel
}

/// The views of run `run`, for the page's `pick`.
/// The record of the view's key at the step asked for (or the nearest
/// logged one), filling in the view's step controls on the way.
async fn chosen_record(
    store: &crate::store::Store,
    run: uuid::Uuid,
    kind: StepKind,
    view: &mut StepView,
    asked: Option<u64>,
) -> Result<Option<(u64, Record)>, PageError> {
    let Some(key) = view.key.clone() else {
        return Ok(None);
    };
    let steps = store.step_record_steps(run, kind, &key).await?;
    let Some(step) = view.set_steps(&steps, asked) else {
        return Ok(None);
    };
    Ok(record_at(store, run, kind, &key, step)
        .await?
        .map(|r| (step, r)))
}

/// The record of `key` at `step`, if there is one.
async fn record_at(
    store: &crate::store::Store,
    run: uuid::Uuid,
    kind: StepKind,
    key: &str,
    step: u64,
) -> Result<Option<Record>, PageError> {
    let recs = store
        .step_records(run, kind, key, Some(step), Some(step), 1)
        .await?;
    Ok(recs.into_iter().next())
}

/// One of the page's pickers of step records: the records of `kind`, the
/// keys under `prefer` first, its query parameters and its panel's anchor
/// (see [`step_view`]).
struct Picker {
    kind: StepKind,
    prefer: &'static str,
    params: (&'static str, &'static str, &'static str),
}

/// The weight heatmap's picker.
const WEIGHTS: Picker = Picker {
    kind: StepKind::Tensor,
    prefer: "weights/",
    params: ("tensor", "tensor_step", "weights"),
};

/// The feature maps' picker.
const FEATURES: Picker = Picker {
    kind: StepKind::Image,
    prefer: "features/",
    params: ("image", "image_step", "feature-maps"),
};

/// What the pickers read from: the run's records, its layers' order and
/// the page's query.
struct PickedFrom<'a> {
    store: &'a crate::store::Store,
    run: uuid::Uuid,
    order: &'a [String],
    pick: &'a Pick,
}

impl Picker {
    /// The picker over the run's `keys` with the key and step `asked` for
    /// (else its defaults), and the record it picks, with its step.
    async fn pick(
        &self,
        at: &PickedFrom<'_>,
        keys: Vec<HistogramKey>,
        (key, step): (Option<&str>, Option<u64>),
    ) -> Result<(StepView, Option<(u64, Record)>), PageError> {
        let keys = keys.into_iter().map(|k| k.key).collect();
        let mut view = step_view(keys, at.order, self.prefer, key, at.pick, self.params);
        let record = chosen_record(at.store, at.run, self.kind, &mut view, step).await?;
        Ok((view, record))
    }
}

pub async fn views(
    state: &AppState,
    run: uuid::Uuid,
    pick: &Pick,
    findings: &[StoredFinding],
) -> Result<Views, PageError> {
    let tensor_step = step_of("tensor_step", &pick.tensor_step)?;
    let image_step = step_of("image_step", &pick.image_step)?;
    let store = &state.store;
    let (model, datasets, tensor_keys, image_keys, pred_keys) = tokio::try_join!(
        store.model(run),
        store.datasets(run),
        store.step_record_keys(run, WEIGHTS.kind),
        store.step_record_keys(run, FEATURES.kind),
        store.step_record_keys(run, StepKind::Predictions),
    )?;
    let order: Vec<String> = model
        .iter()
        .flat_map(|m| m.layers.iter().map(|l| l.name.clone()))
        .collect();

    let at = PickedFrom {
        store,
        run,
        order: &order,
        pick,
    };
    let (mut weights, tensor) = WEIGHTS
        .pick(&at, tensor_keys, (given(&pick.tensor), tensor_step))
        .await?;
    if let Some((step, Record::Tensor(t))) = tensor {
        let files = Files::new(run, ("tensor", &t.key), ("tensor_step", step));
        weight_view(&mut weights, &t, &files);
    }

    let (mut features, image) = FEATURES
        .pick(&at, image_keys, (given(&pick.image), image_step))
        .await?;
    if let Some((step, Record::Image(img))) = image {
        let href = format!(
            "/runs/{run}/image.png?{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("key", &img.key)
                .append_pair("step", &step.to_string())
                .finish()
        );
        let files = Files::new(run, ("image", &img.key), ("image_step", step));
        feature_view(&mut features, &img, &href, &files);
    }

    let predictions = predictions_panel(
        store,
        run,
        pred_keys.into_iter().map(|k| k.key).collect(),
        pick,
    )
    .await?;

    Ok(Views {
        predictions,
        weights,
        features,
        dataset: dataset_panel(datasets),
        model: model_panel(model.as_ref(), findings),
    })
}

/// The predictions panel: the split asked for (else the preferred one),
/// its latest record, analysed.
async fn predictions_panel(
    store: &crate::store::Store,
    run: uuid::Uuid,
    splits: Vec<String>,
    pick: &Pick,
) -> Result<super::predictions::PredictionsPanel, PageError> {
    let asked = given(&pick.pred).filter(|s| splits.iter().any(|x| x == s));
    let Some(split) = asked.or_else(|| predictions::preferred_split(&splits)) else {
        return Ok(Default::default());
    };
    let Some(record) = store.predictions_at(run, split, None).await? else {
        return Ok(Default::default());
    };
    let links = splits
        .iter()
        .map(|s| KeyLink {
            key: s.clone(),
            label: s.clone(),
            href: pick.href("pred", s, "", "predictions"),
            selected: s == split,
        })
        .collect();
    let api = format!(
        "/api/v1/runs/{run}/predictions/analysis?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("split", split)
            .append_pair("step", &record.step.to_string())
            .finish()
    );
    Ok(super::predictions::panel(
        &predictions::analyse(&record),
        links,
        api,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImageQuery {
    key: String,
    step: String,
}

/// The PNG of an `image` record, as logged.
async fn image_png(
    State(state): State<AppState>,
    PageRunId(id): PageRunId,
    Query(q): Query<ImageQuery>,
) -> Result<Response, PageError> {
    let step = step_of("step", &Some(q.step))?.ok_or_else(|| {
        AppError::bad_request("invalid_query", "step".to_string(), "step is required")
    })?;
    let png = match record_at(&state.store, id, StepKind::Image, &q.key, step).await? {
        Some(Record::Image(ImageRecord { png: Some(p), .. })) => p,
        _ => {
            let missing = format!("no PNG image {:?} at step {step}", q.key);
            return Err(AppError::NotFound(missing).into());
        }
    };
    let bytes = logged_png(&png)?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/png"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            // A record re-sent for the same key and step replaces this one.
            (header::CACHE_CONTROL, "max-age=60"),
        ],
        bytes,
    )
        .into_response())
}

/// The bytes of a logged PNG (base64 in the record).
fn logged_png(png: &str) -> Result<Vec<u8>, AppError> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(png)
        .map_err(|e| AppError::Internal(format!("stored PNG is not base64: {e}")))
}

/// The views' downloads through `/runs/{id}/charts/{file}`, by the file's
/// stem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Download {
    Weights,
    FeatureMap,
}

impl Download {
    pub fn by_slug(slug: &str) -> Option<Download> {
        match slug {
            "weights" => Some(Download::Weights),
            "feature-map" => Some(Download::FeatureMap),
            _ => None,
        }
    }
}

/// `key` as a part of a file name: ASCII letters, digits, `-` and `_`.
fn file_part(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// The record of `key` (given as `key_param`) at `step` (the latest when
/// not given), or a 404 naming the parameter that matched nothing.
async fn exact_record(
    store: &crate::store::Store,
    run: uuid::Uuid,
    kind: StepKind,
    (key_param, key): (&str, &str),
    (step_param, step): (&str, Option<u64>),
) -> Result<(u64, Record), PageError> {
    let steps = store.step_record_steps(run, kind, key).await?;
    let (Some(&first), Some(&last)) = (steps.first(), steps.last()) else {
        let msg = format!("{key_param} {key:?}: this run logged no such key");
        return Err(AppError::NotFound(msg).into());
    };
    let step = step.unwrap_or(last);
    let missing = || {
        AppError::NotFound(format!(
            "{step_param} {step}: {key:?} was not logged at this step ({} step(s) logged, {first}–{last})",
            steps.len()
        ))
    };
    if steps.binary_search(&step).is_err() {
        return Err(missing().into());
    }
    let rec = record_at(store, run, kind, key, step).await?;
    Ok((step, rec.ok_or_else(missing)?))
}

/// A view's download: `weights.svg` (the heatmap as on the page) and
/// `weights.csv` (`key,step,row,col,value`, the values as logged) with
/// `?tensor=KEY&tensor_step=STEP`; `feature-map.png` (a channel as drawn on
/// the page, `&channel=C`, 0 by default; a logged picture as it was logged)
/// and `feature-map.csv` (`key,step,channel,row,col,value`) with
/// `?image=KEY&image_step=STEP`. The step is the latest when not given.
/// `(file name without the extension, body)`; `None` for an extension the
/// view has not. A missing or malformed parameter is a 400 naming it, one
/// that matches nothing a 404 naming it.
pub async fn download(
    state: &AppState,
    run: uuid::Uuid,
    which: Download,
    ext: &str,
    q: &super::charts::ChartQuery,
) -> Result<Option<(String, Vec<u8>)>, PageError> {
    let (kind, (key_param, key), (step_param, step), what) = match which {
        Download::Weights => (
            StepKind::Tensor,
            ("tensor", &q.tensor),
            ("tensor_step", &q.tensor_step),
            "a tensor key",
        ),
        Download::FeatureMap => (
            StepKind::Image,
            ("image", &q.image),
            ("image_step", &q.image_step),
            "an image key",
        ),
    };
    let key = given(key).ok_or_else(|| {
        AppError::bad_request(
            "invalid_query",
            key_param.to_string(),
            format!("{key_param} ({what}) is required"),
        )
    })?;
    let step = step_of(step_param, step)?;
    let channel = whole_of("channel", &q.channel, "a channel")?.unwrap_or(0);
    let (step, record) = exact_record(
        &state.store,
        run,
        kind,
        (key_param, key),
        (step_param, step),
    )
    .await?;
    let mut name = format!("{}-{step}", file_part(key));
    let body = match (record, ext) {
        (Record::Tensor(t), "svg") => weight_chart(&t)
            .ok_or_else(|| AppError::NotFound(unfilled(t.values.len(), &t.shape)))?
            .svg
            .into_bytes(),
        (Record::Tensor(t), "csv") => format!(
            "{}{}",
            csv_export::TENSOR_HEADER,
            csv_export::tensor_rows(&t)
        )
        .into_bytes(),
        (Record::Image(img), "csv") => {
            let rows = csv_export::feature_map_rows(&img).ok_or_else(|| {
                AppError::NotFound(format!(
                    "{key_param} {key:?} at step {step} is a picture (PNG), not values: download feature-map.png"
                ))
            })?;
            format!("{}{rows}", csv_export::FEATURE_MAP_HEADER).into_bytes()
        }
        (Record::Image(ImageRecord { png: Some(png), .. }), "png") => logged_png(&png)?,
        (Record::Image(img), "png") => {
            let (shape, values) = (
                img.shape.unwrap_or_default(),
                img.values.unwrap_or_default(),
            );
            let values: Vec<f64> = values.iter().map(|v| v.0).collect();
            let c = feature_map::channel(&shape, &values, channel as usize).ok_or_else(|| {
                AppError::NotFound(format!(
                    "channel {channel}: {key:?} at step {step} has {} channel(s)",
                    shape.first().copied().unwrap_or(0)
                ))
            })?;
            name.push_str(&format!("-ch{channel}"));
            c.png
        }
        _ => return Ok(None),
    };
    Ok(Some((name, body)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{Layer, Value};

    #[test]
    fn steps_snap_to_the_latest_logged_one() {
        let steps = [0, 200, 400, 600];
        assert_eq!(pick_step(&steps, None), Some(600));
        assert_eq!(pick_step(&steps, Some(400)), Some(400));
        assert_eq!(pick_step(&steps, Some(599)), Some(400));
        assert_eq!(pick_step(&steps, Some(10_000)), Some(600));
        assert_eq!(pick_step(&[100, 200], Some(5)), Some(100));
        assert_eq!(pick_step(&[], Some(5)), None);
        assert_eq!(stride(&steps), 200);
        assert_eq!(stride(&[10, 17, 24]), 7);
        assert_eq!(stride(&[3, 5, 10]), 1);
        assert_eq!(stride(&[42]), 1);
    }

    #[test]
    fn links_and_forms_keep_the_other_views() {
        let pick = Pick {
            hist: Some("weights/fc1".into()),
            tensor: Some("weights/fc2".into()),
            tensor_step: Some("100".into()),
            image: Some("features/<x>".into()),
            image_step: Some("".into()),
            smooth: Some("0.9".into()),
            ..Pick::default()
        };
        // Picking a tensor key drops its step (the new key's latest).
        assert_eq!(
            pick.href("tensor", "weights/a&b", "tensor_step", "weights"),
            "?hist=weights%2Ffc1&tensor=weights%2Fa%26b&image=features%2F%3Cx%3E&smooth=0.9#weights"
        );
        assert_eq!(
            pick.hidden(&["image", "image_step"]),
            vec![
                ("hist", "weights/fc1".to_string()),
                ("tensor", "weights/fc2".to_string()),
                ("tensor_step", "100".to_string()),
                ("smooth", "0.9".to_string())
            ]
        );
        assert!(step_of("tensor_step", &Some("x".into())).is_err());
        assert_eq!(step_of("tensor_step", &Some(" ".into())).unwrap(), None);
    }

    #[test]
    fn the_step_view_picks_a_key_and_a_step() {
        let keys = vec![
            "weights/fc2".to_string(),
            "weights/fc1".to_string(),
            "attention/head0".to_string(),
        ];
        let pick = Pick::default();
        let v = step_view(
            keys.clone(),
            &["fc1".into(), "fc2".into()],
            "weights/",
            None,
            &pick,
            ("tensor", "tensor_step", "weights"),
        );
        let labels: Vec<&str> = v.keys.iter().map(|k| k.label.as_str()).collect();
        assert_eq!(
            labels,
            ["fc1", "fc2", "attention/head0"],
            "model order first"
        );
        assert_eq!(v.key.as_deref(), Some("weights/fc1"));
        assert!(v.note.is_none());
        let mut v = step_view(
            keys,
            &[],
            "weights/",
            Some("<script>"),
            &pick,
            ("tensor", "tensor_step", "weights"),
        );
        assert_eq!(v.key.as_deref(), Some("weights/fc1"));
        assert!(
            v.note.as_deref().unwrap().contains("<script>"),
            "escaped by the template"
        );
        assert_eq!(v.set_steps(&[0, 200, 400], Some(300)), Some(200));
        assert_eq!(v.choices, vec![(400, false), (200, true), (0, false)]);
        assert_eq!((v.first, v.last, v.stride, v.count), (0, 400, 200, 3));
        assert!(v.note.as_deref().unwrap().contains("Step 300"));
    }

    #[test]
    fn weight_and_feature_views() {
        let t = TensorRecord {
            step: 20,
            key: "weights/fc1".into(),
            shape: vec![2, 3],
            values: [0.5, -0.25, 1.0, 0.0, 2.0, f64::INFINITY]
                .map(Value)
                .to_vec(),
            sample: Some("rows:0-1".into()),
            time: None,
        };
        let mut v = StepView::default();
        let nil = uuid::Uuid::nil();
        let files = Files::new(nil, ("tensor", "weights/fc1"), ("tensor_step", 20));
        weight_view(&mut v, &t, &files);
        assert_eq!(
            v.downloads,
            [
                (
                    "SVG",
                    format!("/runs/{nil}/charts/weights.svg?tensor=weights%2Ffc1&tensor_step=20")
                ),
                (
                    "CSV",
                    format!("/runs/{nil}/charts/weights.csv?tensor=weights%2Ffc1&tensor_step=20")
                )
            ]
        );
        assert!(
            v.chart
                .as_deref()
                .unwrap()
                .contains("weights/fc1 at step 20")
        );
        assert!(v.facts.contains(&("values", "-0.25 to 2".into())));
        assert!(v.facts.contains(&("sample", "rows:0-1".into())));
        assert_eq!(
            v.bad.as_deref(),
            Some("1 +Inf among the values (magenta cells)")
        );

        let img = ImageRecord {
            step: 10,
            key: "features/conv1".into(),
            png: None,
            shape: Some(vec![3, 2, 2]),
            values: Some(
                [
                    0.0,
                    1.0,
                    2.0,
                    3.0,
                    5.0,
                    5.0,
                    5.0,
                    5.0,
                    f64::NAN,
                    1.0,
                    2.0,
                    3.0,
                ]
                .map(Value)
                .to_vec(),
            ),
            time: None,
        };
        let mut v = StepView::default();
        let files = Files::new(nil, ("image", "features/conv1"), ("image_step", 10));
        feature_view(&mut v, &img, "/png", &files);
        assert_eq!(v.cells.len(), 3, "a cell per channel");
        let q = "image=features%2Fconv1&image_step=10";
        assert_eq!(
            v.cells[2].download,
            format!("/runs/{nil}/charts/feature-map.png?{q}&channel=2")
        );
        assert_eq!(
            v.downloads,
            [("CSV", format!("/runs/{nil}/charts/feature-map.csv?{q}"))]
        );
        assert!(v.cells[0].src.starts_with("data:image/png;base64,"));
        assert_eq!(v.cells[0].range, "0 … 3");
        assert!(v.cells[1].constant);
        assert_eq!(v.cells[1].range, "constant 5");
        assert_eq!(v.cells[2].nonfinite, 1);
        assert!(v.bad.is_some());
        let png = ImageRecord {
            png: Some("iVBOR".into()),
            shape: None,
            values: None,
            ..img
        };
        let mut v = StepView::default();
        feature_view(&mut v, &png, "/runs/x/image.png?key=k&step=10", &files);
        assert_eq!(v.cells.len(), 1);
        assert!(v.cells[0].picture && v.cells[0].src.starts_with("/runs/x/image.png"));
        let logged = format!("/runs/{nil}/charts/feature-map.png?{q}");
        assert_eq!(v.cells[0].download, logged);
        assert_eq!(v.downloads, [("PNG", logged)]);
        assert_eq!(file_part("weights/<fc 1>"), "weights--fc-1-");
    }

    fn split(
        name: &str,
        n: u64,
        classes: &[(&str, u64)],
        mean: &[f64],
        std: &[f64],
    ) -> DatasetRecord {
        DatasetRecord {
            split: name.into(),
            n: Some(n),
            n_features: Some(mean.len() as u64),
            missing: Some(0),
            feature_mean: Some(mean.iter().copied().map(Value).collect()),
            feature_std: Some(std.iter().copied().map(Value).collect()),
            class_counts: Some(
                classes
                    .iter()
                    .map(|(k, v)| (k.to_string(), serde_json::json!(v)))
                    .collect(),
            ),
            extra: Default::default(),
        }
    }

    #[test]
    fn the_dataset_panel_compares_train_and_validation() {
        assert!(dataset_panel(vec![]).splits.is_empty());
        let mut val = split(
            "validation",
            100,
            &[("cat", 50), ("<dog>", 50)],
            &[0.0, 3.0, 1.0],
            &[1.0, 1.0, 5.0],
        );
        val.missing = Some(12);
        let panel = dataset_panel(vec![
            val,
            split(
                "train",
                1000,
                &[("cat", 900), ("<dog>", 100)],
                &[0.0, 1.0, 1.0],
                &[1.0, 2.0, 1.0],
            ),
        ]);
        let names: Vec<&str> = panel.splits.iter().map(|s| s.split.as_str()).collect();
        assert_eq!(names, ["train", "validation"], "train first");
        assert_eq!(panel.splits[1].missing, "12 (4.00 % of cells)");
        assert!(panel.splits[1].missing_bad);
        let chart = panel.classes_chart.unwrap();
        assert!(chart.contains("class cat, train: 900 (90.0 %)"));
        assert!(chart.contains("&lt;dog&gt;") && !chart.contains("<dog>"));
        // Feature 1: (3 − 1) / 2 = +1.00 σ; feature 2: std ratio 5×.
        assert_eq!(panel.shift[0].feature, 1);
        assert_eq!(panel.shift[0].smd, "+1.00");
        assert!(panel.shift[0].shifted);
        let f2 = panel.shift.iter().find(|r| r.feature == 2).unwrap();
        assert!(f2.shifted && f2.ratio == "5.00×");
        assert!(!panel.shift.iter().find(|r| r.feature == 0).unwrap().shifted);
        assert!(panel.shift_note.unwrap().contains("2 flagged"));
    }

    #[test]
    fn the_model_panel_puts_findings_on_their_layer() {
        use crate::diagnostics::{Evidence, Finding, Kind, Severity};
        let model = ModelRecord {
            layers: vec![
                Layer {
                    name: "fc1".into(),
                    kind: Some("Linear".into()),
                    inputs: Some(4),
                    outputs: Some(8),
                    params: Some(40),
                    activation: Some("relu".into()),
                    trainable: Some(true),
                    ..Layer::default()
                },
                Layer {
                    name: "<head>".into(),
                    activation: Some("softmax".into()),
                    ..Layer::default()
                },
            ],
            total_params: Some(1_234_567),
            loss: Some("cross_entropy".into()),
            ..ModelRecord::default()
        };
        let finding = |kind: Kind, layer: Option<&str>, status| StoredFinding {
            run_id: uuid::Uuid::nil(),
            run_name: "r".into(),
            project: "p".into(),
            status,
            finding: Finding {
                kind,
                caused_by: None,
                severity: Severity::Error,
                onset_step: None,
                title: format!("{} title", kind.as_str()),
                evidence: Evidence {
                    layer: layer.map(str::to_string),
                    ..Evidence::default()
                },
                cause: String::new(),
                fixes: vec![],
            },
            first_seen_at: 0.0,
            updated_at: 0.0,
            resolved_at: None,
        };
        let findings = [
            finding(
                Kind::LossActivationMismatch,
                Some("<head>"),
                FindingStatus::Open,
            ),
            finding(Kind::DeadRelu, Some("fc9"), FindingStatus::Open),
            finding(Kind::DeadRelu, Some("fc1"), FindingStatus::Resolved),
            finding(Kind::Overfitting, None, FindingStatus::Open),
        ];
        let p = model_panel(Some(&model), &findings);
        assert!(p.present);
        assert!(p.facts.contains(&("parameters", "1,234,567".into())));
        assert_eq!(p.layers.len(), 2);
        assert!(
            p.layers[0].notes.is_empty(),
            "resolved findings are not notes"
        );
        assert_eq!(p.layers[1].notes[0].kind, "loss_activation_mismatch");
        assert_eq!(
            p.notes.len(),
            1,
            "a layer not in the table; overfitting is not about it"
        );
        assert_eq!(p.notes[0].layer.as_deref(), Some("fc9"));
        assert!(!model_panel(None, &findings).present);
    }
}
