//! Event → record mapping: what each kind of TensorBoard summary becomes in
//! the record format, following TensorBoard's own `data_compat`:
//!
//! | summary | record |
//! |---|---|
//! | `simple_value` | `scalar` (f32 widened exactly) |
//! | tensor with plugin `scalars` or data class SCALAR, one element (float, double, half, int, bool) | `scalar` |
//! | `histo` (`HistogramProto`) | `histogram`: bucket `i` spans `bucket_limit[i-1]..bucket_limit[i]`, empty end buckets dropped, `min`/`max` as the outer edges (so the ±DBL_MAX limits of the end buckets never become edges) |
//! | `[k,3]` tensor with plugin `histograms` (TF2: rows of left, right, count) | `histogram` |
//! | `image` (encoded PNG) and plugin `images` tensors (`[w, h, png…]`) | `image` with `png` |
//! | plugin `hparams`, session start | the run's `config` |
//!
//! Wall time becomes the point time, the step stays as written. Summary
//! metadata usually comes only with a tag's first value, so the plugin of
//! each tag is remembered ([`TagPlugins`]) — also across imports, by the
//! caller. Everything else (text, audio, graphs, other plugins) is counted
//! as skipped, never an error.

use std::collections::BTreeMap;

use base64::Engine;
use prost::Message;

use super::proto::{
    self, DataType, Event, HistogramProto, SummaryValue, TensorProto, ValueKind, What,
};
use crate::ingest::{self, Limits};
use crate::model::{Batch, Point};
use crate::record::{HistogramRecord, ImageRecord};

/// The plugin of each tag seen so far in one run (from the metadata of its
/// first value).
pub type TagPlugins = BTreeMap<String, String>;

/// Plugin name recorded for a tag whose metadata said data class SCALAR
/// without naming a plugin.
const SCALARS: &str = "scalars";

/// What one summary value becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Scalar {
        key: String,
        point: Point,
    },
    Histogram(HistogramRecord),
    Image(ImageRecord),
    /// Hyperparameters for the run's config.
    Config(serde_json::Map<String, serde_json::Value>),
    /// Not imported, with the reason (counted per reason by the caller).
    Skipped(String),
}

impl Item {
    /// A histogram of the edges, counts and non-finite count that
    /// [`from_buckets`] answers.
    fn histogram(key: String, step: u64, (edges, counts, nonfinite): Buckets) -> Item {
        Item::Histogram(HistogramRecord {
            step,
            key,
            edges,
            counts,
            nonfinite,
        })
    }
}

/// Decodes one record of an event file and maps it; an undecodable record
/// is one `Skipped` item.
pub fn map_record(data: &[u8], tags: &mut TagPlugins, max_bins: usize, out: &mut Vec<Item>) {
    match Event::decode(data) {
        Ok(event) => map_event(event, tags, max_bins, out),
        Err(e) => out.push(Item::Skipped(format!("not an Event protobuf ({e})"))),
    }
}

/// Maps the summary values of one event (other events map to nothing).
pub fn map_event(event: Event, tags: &mut TagPlugins, max_bins: usize, out: &mut Vec<Item>) {
    let Some(What::Summary(summary)) = event.what else {
        return;
    };
    let Ok(step) = u64::try_from(event.step) else {
        out.push(Item::Skipped(format!("negative step {}", event.step)));
        return;
    };
    let time = (event.wall_time.is_finite() && event.wall_time > 0.0).then_some(event.wall_time);
    for value in summary.value {
        out.push(map_value(value, step, time, tags, max_bins));
    }
}

/// The plugin of a value: from its metadata (remembered for its tag), or
/// the one remembered for its tag.
fn plugin_of<'t>(value: &SummaryValue, tags: &'t mut TagPlugins) -> Option<&'t str> {
    if let Some(meta) = &value.metadata {
        let named = meta
            .plugin_data
            .as_ref()
            .map(|p| p.plugin_name.as_str())
            .filter(|p| !p.is_empty());
        let plugin = match named {
            Some(p) => Some(p),
            None if meta.data_class == proto::DATA_CLASS_SCALAR => Some(SCALARS),
            None => None,
        };
        if let Some(p) = plugin
            && tags.get(&value.tag).map(String::as_str) != Some(p)
        {
            tags.insert(value.tag.clone(), p.to_string());
        }
    }
    tags.get(&value.tag).map(String::as_str)
}

fn map_value(
    value: SummaryValue,
    step: u64,
    time: Option<f64>,
    tags: &mut TagPlugins,
    max_bins: usize,
) -> Item {
    // The plugin only matters for tensors and hparams (metadata-only
    // values): a simple value is a scalar, a histo a histogram, whatever it
    // says. Looking it up for those too keeps the tag's plugin remembered.
    let plugin =
        if value.metadata.is_some() || matches!(value.value, Some(ValueKind::Tensor(_)) | None) {
            plugin_of(&value, tags).map(str::to_string)
        } else {
            None
        };
    if plugin.as_deref() == Some("hparams") {
        return hparams(&value);
    }
    let key = value.tag;
    match value.value {
        Some(ValueKind::SimpleValue(v)) => Item::Scalar {
            key,
            point: Point {
                step,
                value: f64::from(v),
                time,
            },
        },
        Some(ValueKind::Histo(h)) => Item::histogram(key, step, from_histogram_proto(&h, max_bins)),
        Some(ValueKind::Image(img)) => png_image(key, step, time, &img.encoded_image_string),
        Some(ValueKind::Tensor(t)) => map_tensor(key, &t, plugin.as_deref(), step, time, max_bins),
        None => Item::Skipped("a value without data".into()),
    }
}

fn map_tensor(
    key: String,
    t: &TensorProto,
    plugin: Option<&str>,
    step: u64,
    time: Option<f64>,
    max_bins: usize,
) -> Item {
    match plugin {
        Some("histograms") => match histogram_rows(t) {
            Some(rows) => {
                let min = rows.first().map_or(0.0, |r| r.0);
                let max = rows.last().map_or(0.0, |r| r.1);
                Item::histogram(key, step, from_buckets(rows, min, max, max_bins))
            }
            None => Item::Skipped("a histogram tensor that is not [k,3] numbers".into()),
        },
        Some("images") => {
            // [width, height, encoded image…]; a batch of several images
            // under one tag has no place in one record: skipped.
            let images = t.string_val.get(2..).unwrap_or_default();
            match images {
                [] => Item::Skipped("an image tensor without images".into()),
                [one] => png_image(key, step, time, one),
                _ => Item::Skipped("an image tensor of several images".into()),
            }
        }
        Some(SCALARS) | None => match tensor_values(t).as_deref() {
            Some([v]) => Item::Scalar {
                key,
                point: Point {
                    step,
                    value: *v,
                    time,
                },
            },
            Some(_) if plugin.is_some() => {
                Item::Skipped("a scalar tensor with more than one element".into())
            }
            _ => Item::Skipped("a tensor without a plugin that reads it".into()),
        },
        Some(other) => Item::Skipped(format!("plugin {other:?}")),
    }
}

fn png_image(key: String, step: u64, time: Option<f64>, encoded: &[u8]) -> Item {
    if !encoded.starts_with(ingest::PNG_SIGNATURE) {
        return Item::Skipped("an image that is not a PNG".into());
    }
    Item::Image(ImageRecord {
        step,
        key,
        png: Some(base64::engine::general_purpose::STANDARD.encode(encoded)),
        shape: None,
        values: None,
        time,
    })
}

/// The hyperparameters of a session start (the experiment and the
/// session end carry none of the run's).
fn hparams(value: &SummaryValue) -> Item {
    let Some(content) = value
        .metadata
        .as_ref()
        .and_then(|m| m.plugin_data.as_ref())
        .map(|p| &p.content[..])
    else {
        return Item::Skipped("hparams without plugin data".into());
    };
    let data = match proto::HParamsPluginData::decode(content) {
        Ok(d) => d,
        Err(e) => return Item::Skipped(format!("undecodable hparams ({e})")),
    };
    let Some(start) = data.session_start_info else {
        return Item::Config(Default::default());
    };
    let mut pairs: Vec<_> = start.hparams.into_iter().collect();
    pairs.sort_by(|a, b| a.0.cmp(&b.0));
    let config = pairs
        .into_iter()
        .map(|(k, v)| (k, hparam_json(v.kind)))
        .collect();
    Item::Config(config)
}

fn hparam_json(kind: Option<proto::ProtoKind>) -> serde_json::Value {
    use proto::ProtoKind;
    use serde_json::Value as J;
    match kind {
        None | Some(ProtoKind::NullValue(_)) => J::Null,
        Some(ProtoKind::BoolValue(b)) => J::Bool(b),
        Some(ProtoKind::StringValue(s)) => J::String(s),
        // Integers travel as doubles: 32.0 was a batch size of 32.
        Some(ProtoKind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            J::from(n as i64)
        }
        Some(ProtoKind::NumberValue(n)) => serde_json::Number::from_f64(n)
            .map(J::Number)
            .unwrap_or_else(|| J::String(crate::record::nonfinite_name(n).into())),
    }
}

/// The numbers of a numeric tensor, from its `*_val` field or its raw
/// little-endian content; `None` for other types.
pub fn tensor_values(t: &TensorProto) -> Option<Vec<f64>> {
    fn raw<const N: usize>(c: &[u8], f: impl Fn([u8; N]) -> f64) -> Vec<f64> {
        c.chunks_exact(N)
            .map(|b| f(b.try_into().expect("N bytes")))
            .collect()
    }
    let c = &t.tensor_content;
    let v = match t.dtype() {
        DataType::Float if c.is_empty() => t.float_val.iter().map(|&v| f64::from(v)).collect(),
        DataType::Float => raw(c, |b| f64::from(f32::from_le_bytes(b))),
        DataType::Double if c.is_empty() => t.double_val.clone(),
        DataType::Double => raw(c, f64::from_le_bytes),
        DataType::Half if c.is_empty() => t.half_val.iter().map(|&h| half(h as u16)).collect(),
        DataType::Half => raw(c, |b| half(u16::from_le_bytes(b))),
        DataType::Int32 if c.is_empty() => t.int_val.iter().map(|&v| f64::from(v)).collect(),
        DataType::Int32 => raw(c, |b| f64::from(i32::from_le_bytes(b))),
        DataType::Int64 if c.is_empty() => t.int64_val.iter().map(|&v| v as f64).collect(),
        DataType::Int64 => raw(c, |b| i64::from_le_bytes(b) as f64),
        DataType::Bool if c.is_empty() => t.bool_val.iter().map(|&v| f64::from(v)).collect(),
        DataType::Bool => c.iter().map(|&b| f64::from(b != 0)).collect(),
        DataType::Invalid | DataType::String => return None,
    };
    Some(v)
}

/// An IEEE 754 half float.
fn half(bits: u16) -> f64 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((bits >> 10) & 0x1f);
    let frac = f64::from(bits & 0x3ff);
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        _ => (1.0 + frac / 1024.0) * 2f64.powi(exp - 15),
    }
}

/// The rows `(left, right, count)` of a `[k,3]` tensor.
fn histogram_rows(t: &TensorProto) -> Option<Vec<(f64, f64, f64)>> {
    let dims: Vec<i64> = t
        .tensor_shape
        .as_ref()?
        .dim
        .iter()
        .map(|d| d.size)
        .collect();
    let values = tensor_values(t)?;
    match dims[..] {
        [k, 3] if values.len() as i64 == k * 3 => {
            Some(values.chunks_exact(3).map(|r| (r[0], r[1], r[2])).collect())
        }
        [0, _] | [0] => Some(Vec::new()),
        _ => None,
    }
}

/// A histogram's edges, counts and count of non-finite values.
pub type Buckets = (Vec<f64>, Vec<u64>, u64);

/// A TF1 `HistogramProto` as edges, counts and the count of non-finite
/// values.
pub fn from_histogram_proto(h: &HistogramProto, max_bins: usize) -> Buckets {
    let n = h.bucket_limit.len().min(h.bucket.len());
    let rows = (0..n)
        .map(|i| {
            let left = if i == 0 {
                f64::NEG_INFINITY
            } else {
                h.bucket_limit[i - 1]
            };
            (left, h.bucket_limit[i], h.bucket[i])
        })
        .collect();
    from_buckets(rows, h.min, h.max, max_bins)
}

/// A limit that stands for "unbounded": ±∞, NaN, or TensorFlow's ±DBL_MAX.
fn unbounded(x: f64) -> bool {
    !x.is_finite() || x.abs() >= f64::MAX
}

/// Buckets `(left, right, count)` in order → edges, counts, non-finite
/// count: empty end buckets dropped, a bucket that can only hold ±∞ counted
/// as non-finite, `min`/`max` as the outer edges when they fit the end
/// buckets (the end buckets' limits when they do not), edges made finite
/// and non-decreasing, and adjacent buckets merged to at most `max_bins`.
pub fn from_buckets(rows: Vec<(f64, f64, f64)>, min: f64, max: f64, max_bins: usize) -> Buckets {
    let count = |c: f64| {
        if c.is_finite() && c > 0.0 {
            c.round() as u64
        } else {
            0
        }
    };
    let mut nonfinite = 0;
    let mut rows: Vec<(f64, f64, u64)> = rows
        .into_iter()
        .filter_map(|(l, r, c)| {
            let c = count(c);
            // Only −∞ (right limit −∞/−DBL_MAX) or only +∞ (left +∞/+DBL_MAX).
            if (unbounded(r) && r < 0.0) || (unbounded(l) && l > 0.0) {
                nonfinite += c;
                None
            } else {
                Some((l, r, c))
            }
        })
        .collect();
    let first = rows.iter().position(|r| r.2 > 0);
    let last = rows.iter().rposition(|r| r.2 > 0);
    let (Some(first), Some(last)) = (first, last) else {
        return (Vec::new(), Vec::new(), nonfinite);
    };
    rows.truncate(last + 1);
    rows.drain(..first);
    let (l0, r0, _) = rows[0];
    let (ln, rn, _) = rows[rows.len() - 1];
    let left = if min.is_finite() && min <= r0 && (unbounded(l0) || min >= l0) {
        min
    } else if unbounded(l0) {
        r0
    } else {
        l0
    };
    let right = if max.is_finite() && max >= ln && (unbounded(rn) || max <= rn) {
        max
    } else if unbounded(rn) {
        ln
    } else {
        rn
    };
    let mut edges = Vec::with_capacity(rows.len() + 1);
    edges.push(left);
    edges.extend(rows[..rows.len() - 1].iter().map(|r| r.1));
    edges.push(right);
    let mut prev = f64::MIN;
    for e in &mut edges {
        if !e.is_finite() {
            *e = if prev == f64::MIN { 0.0 } else { prev };
        }
        *e = e.max(prev);
        prev = *e;
    }
    let mut counts: Vec<u64> = rows.iter().map(|r| r.2).collect();
    if max_bins > 0 && counts.len() > max_bins {
        let k = counts.len().div_ceil(max_bins);
        counts = counts.chunks(k).map(|c| c.iter().sum()).collect();
        let n = edges.len() - 1;
        edges = (0..n)
            .step_by(k)
            .map(|i| edges[i])
            .chain([edges[n]])
            .collect();
    }
    (edges, counts, nonfinite)
}

/// The records of one run read so far, validated: a value the record
/// format refuses (an empty or over-long tag, a huge image, …) is skipped
/// with its reason, never an error for the whole import.
#[derive(Debug, Default)]
pub struct Accumulator {
    pub batch: Batch,
    /// Hyperparameters found (the run's config).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Why values were skipped, with how many.
    pub skipped: BTreeMap<String, u64>,
}

impl Accumulator {
    pub fn push(&mut self, item: Item, limits: &Limits) {
        let refused = match item {
            Item::Scalar { key, point } => {
                match ingest::validate_key("key", &key).and(ingest::check_step("step", point.step))
                {
                    Ok(()) => {
                        match self.batch.scalars.get_mut(&key) {
                            Some(points) => points.push(point),
                            None => {
                                self.batch.scalars.insert(key, vec![point]);
                            }
                        }
                        return;
                    }
                    Err(e) => format!("scalar {:?}: {e}", key),
                }
            }
            Item::Histogram(h) => match ingest::validate_histogram(&h, limits) {
                Ok(()) => return self.batch.histograms.push(h),
                Err(e) => format!("histogram {:?}: {e}", h.key),
            },
            Item::Image(i) => match ingest::validate_image(&i, limits) {
                Ok(()) => return self.batch.images.push(i),
                Err(e) => format!("image {:?}: {e}", i.key),
            },
            Item::Config(c) => return self.config.extend(c),
            Item::Skipped(reason) => reason,
        };
        *self.skipped.entry(refused).or_default() += 1;
    }

    /// Records held (points, histograms, images).
    pub fn len(&self) -> usize {
        self.batch.record_count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensorboard::proto::{
        Dim, HParamsPluginData, PluginData, ProtoKind, ProtoValue, SessionStartInfo, Summary,
        SummaryMetadata, TensorShapeProto,
    };

    fn event(step: i64, values: Vec<SummaryValue>) -> Event {
        Event {
            wall_time: 1_700_000_000.5,
            step,
            what: Some(What::Summary(Summary { value: values })),
        }
    }

    fn value(tag: &str, plugin: Option<&str>, kind: ValueKind) -> SummaryValue {
        SummaryValue {
            tag: tag.into(),
            metadata: plugin.map(|p| SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: p.into(),
                    content: Vec::new(),
                }),
                data_class: 0,
            }),
            value: Some(kind),
        }
    }

    fn map(events: &[Event]) -> Vec<Item> {
        let mut tags = TagPlugins::new();
        let mut out = Vec::new();
        for e in events {
            // Through the bytes, as read from a file.
            map_record(&e.encode_to_vec(), &mut tags, 1000, &mut out);
        }
        out
    }

    fn scalar(key: &str, step: u64, value: f64) -> Item {
        Item::Scalar {
            key: key.into(),
            point: Point {
                step,
                value,
                time: Some(1_700_000_000.5),
            },
        }
    }

    fn histogram(key: &str, step: u64, edges: Vec<f64>, counts: Vec<u64>) -> Item {
        Item::Histogram(HistogramRecord {
            step,
            key: key.into(),
            edges,
            counts,
            nonfinite: 0,
        })
    }

    #[test]
    fn simple_values_are_scalars_with_wall_time_and_step() {
        let items = map(&[event(
            7,
            vec![value("train/loss", None, ValueKind::SimpleValue(0.1))],
        )]);
        assert_eq!(items, [scalar("train/loss", 7, f64::from(0.1f32))]);
    }

    #[test]
    fn tf2_scalar_tensors_are_read_with_the_plugin_of_the_first_value() {
        let float = TensorProto {
            dtype: DataType::Float.into(),
            float_val: vec![2.5],
            ..Default::default()
        };
        let double = TensorProto {
            dtype: DataType::Double.into(),
            tensor_content: 0.1f64.to_le_bytes().to_vec(),
            ..Default::default()
        };
        let mut second = value("loss", None, ValueKind::Tensor(double.clone()));
        second.metadata = None;
        let items = map(&[
            event(
                0,
                vec![value("loss", Some("scalars"), ValueKind::Tensor(float))],
            ),
            event(1, vec![second]),
        ]);
        assert_eq!(items, [scalar("loss", 0, 2.5), scalar("loss", 1, 0.1)]);
        // Half floats and integers too.
        let half = TensorProto {
            dtype: DataType::Half.into(),
            half_val: vec![0x3c00], // 1.0
            ..Default::default()
        };
        let int = TensorProto {
            dtype: DataType::Int64.into(),
            int64_val: vec![42],
            ..Default::default()
        };
        assert_eq!(tensor_values(&half), Some(vec![1.0]));
        assert_eq!(tensor_values(&int), Some(vec![42.0]));
    }

    #[test]
    fn histogram_protos_drop_empty_end_buckets_and_use_min_and_max_as_edges() {
        // torch: an empty bucket before the first edge, DBL_MAX as the last limit.
        let h = HistogramProto {
            min: -0.9,
            max: 1.7,
            num: 8.0,
            bucket_limit: vec![-1.0, 0.0, 1.0, 2.0, f64::MAX],
            bucket: vec![0.0, 3.0, 0.0, 5.0, 0.0],
            ..Default::default()
        };
        let items = map(&[event(3, vec![value("w", None, ValueKind::Histo(h))])]);
        assert_eq!(
            items,
            [histogram("w", 3, vec![-0.9, 0.0, 1.0, 1.7], vec![3, 0, 5])]
        );
    }

    #[test]
    fn the_unbounded_end_buckets_take_min_and_max_and_infinities_count_as_nonfinite() {
        // Bucket 0 spans −DBL_MAX..−1: its left edge is the min.
        let h = HistogramProto {
            min: -5.0,
            max: 7.0,
            bucket_limit: vec![-1.0, 0.0, f64::MAX],
            bucket: vec![2.0, 3.0, 4.0],
            ..Default::default()
        };
        assert_eq!(
            from_histogram_proto(&h, 1000),
            (vec![-5.0, -1.0, 0.0, 7.0], vec![2, 3, 4], 0)
        );
        // A bucket ending at −∞ can only hold −∞; one starting at +∞ only +∞.
        let h = HistogramProto {
            min: f64::NEG_INFINITY,
            max: f64::INFINITY,
            bucket_limit: vec![f64::NEG_INFINITY, 0.0, 1.0, f64::INFINITY, f64::INFINITY],
            bucket: vec![2.0, 1.0, 1.0, 0.0, 3.0],
            ..Default::default()
        };
        assert_eq!(
            from_histogram_proto(&h, 1000),
            (vec![0.0, 0.0, 1.0], vec![1, 1], 5)
        );
        // Nothing counted: an empty histogram.
        let empty = HistogramProto::default();
        assert_eq!(from_histogram_proto(&empty, 1000), (vec![], vec![], 0));
    }

    #[test]
    fn too_many_buckets_are_merged_without_losing_a_count() {
        let rows: Vec<_> = (0..10).map(|i| (i as f64, i as f64 + 1.0, 1.0)).collect();
        let (edges, counts, _) = from_buckets(rows, 0.0, 10.0, 4);
        assert_eq!(edges, [0.0, 3.0, 6.0, 9.0, 10.0]);
        assert_eq!(counts, [3, 3, 3, 1]);
    }

    #[test]
    fn tf2_histogram_tensors_are_rows_of_left_right_count() {
        let rows = [-1.0, 0.0, 3.0, 0.0, 0.5, 5.0, 0.5, 2.0, 2.0];
        let t = TensorProto {
            dtype: DataType::Double.into(),
            tensor_shape: Some(TensorShapeProto {
                dim: vec![Dim { size: 3 }, Dim { size: 3 }],
            }),
            tensor_content: rows.iter().flat_map(|v: &f64| v.to_le_bytes()).collect(),
            ..Default::default()
        };
        let items = map(&[event(
            4,
            vec![value("h", Some("histograms"), ValueKind::Tensor(t))],
        )]);
        assert_eq!(
            items,
            [histogram("h", 4, vec![-1.0, 0.0, 0.5, 2.0], vec![3, 5, 2])]
        );
    }

    #[test]
    fn hparams_become_the_config_with_whole_numbers_as_integers() {
        let content = HParamsPluginData {
            version: 0,
            session_start_info: Some(SessionStartInfo {
                hparams: [
                    ("lr", ProtoKind::NumberValue(0.1)),
                    ("batch_size", ProtoKind::NumberValue(32.0)),
                    ("opt", ProtoKind::StringValue("sgd".into())),
                    ("bn", ProtoKind::BoolValue(true)),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ProtoValue { kind: Some(v) }))
                .collect(),
                group_name: String::new(),
            }),
        };
        let v = SummaryValue {
            tag: "_hparams_/session_start_info".into(),
            metadata: Some(SummaryMetadata {
                plugin_data: Some(PluginData {
                    plugin_name: "hparams".into(),
                    content: content.encode_to_vec(),
                }),
                data_class: 0,
            }),
            value: None,
        };
        let items = map(&[event(0, vec![v])]);
        let Item::Config(c) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(
            serde_json::Value::Object(c.clone()),
            serde_json::json!({"batch_size": 32, "bn": true, "lr": 0.1, "opt": "sgd"})
        );
    }

    #[test]
    fn pngs_are_images_and_the_rest_is_skipped_with_a_reason() {
        let png = b"\x89PNG\r\n\x1a\nrest".to_vec();
        let img = |bytes: Vec<u8>| {
            ValueKind::Image(proto::Image {
                height: 1,
                width: 1,
                colorspace: 3,
                encoded_image_string: bytes,
            })
        };
        let items = map(&[
            event(
                1,
                vec![
                    value("in", None, img(png)),
                    value("jpeg", None, img(b"\xff\xd8\xff".to_vec())),
                    value("t", Some("text"), ValueKind::SimpleValue(1.0)),
                ],
            ),
            event(-1, vec![value("x", None, ValueKind::SimpleValue(1.0))]),
        ]);
        let Item::Image(i) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(i.png.as_deref(), Some("iVBORw0KGgpyZXN0"));
        assert_eq!(i.time, Some(1_700_000_000.5));
        assert_eq!(items[1], Item::Skipped("an image that is not a PNG".into()));
        // A simple value is a scalar whatever its plugin says.
        assert_eq!(items[2], scalar("t", 1, 1.0));
        assert_eq!(items[3], Item::Skipped("negative step -1".into()));
        let mut garbage = Vec::new();
        map_record(b"\xff\xff", &mut TagPlugins::new(), 10, &mut garbage);
        assert!(matches!(&garbage[..], [Item::Skipped(r)] if r.starts_with("not an Event")));
    }

    #[test]
    fn the_accumulator_keeps_what_the_format_allows_and_counts_the_rest() {
        let mut acc = Accumulator::default();
        let lim = Limits::default();
        acc.push(scalar("ok", 0, 1.0), &lim);
        acc.push(scalar("ok", 1, 2.0), &lim);
        acc.push(scalar(&"k".repeat(300), 0, 1.0), &lim);
        acc.push(Item::Skipped("plugin \"text\"".into()), &lim);
        assert_eq!(acc.batch.point_count(), 2);
        assert_eq!(acc.len(), 2);
        assert_eq!(acc.skipped.values().sum::<u64>(), 2);
        assert!(
            acc.skipped.keys().any(|r| r.contains("256")),
            "{:?}",
            acc.skipped
        );
    }
}
