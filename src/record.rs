//! The JSONL record format (version 1), shared by the NDJSON ingest endpoint,
//! `trainlens import`/`export` and the diagnostics' view of a run.
//!
//! Non-finite values travel as the strings `"NaN"`, `"Infinity"` and
//! `"-Infinity"`; [`Value`] reads and writes them that way.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A metric value: any `f64`, including NaN and ±Infinity.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Value(pub f64);

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_f64(self.0, s)
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        deserialize_f64(d).map(Value)
    }
}

/// Writes a float as a JSON number, or as `"NaN"`, `"Infinity"`, `"-Infinity"`.
pub fn serialize_f64<S: Serializer>(v: f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() {
        s.serialize_f64(v)
    } else {
        s.serialize_str(nonfinite_name(v))
    }
}

/// The wire name of a non-finite float.
pub fn nonfinite_name(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "Infinity"
    } else {
        "-Infinity"
    }
}

/// Parses the wire name of a non-finite float.
pub fn parse_nonfinite(s: &str) -> Option<f64> {
    match s {
        "NaN" => Some(f64::NAN),
        "Infinity" => Some(f64::INFINITY),
        "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

/// Reads a JSON number or one of the non-finite strings.
pub fn deserialize_f64<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = f64;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a number or one of \"NaN\", \"Infinity\", \"-Infinity\"")
        }
        fn visit_f64<E>(self, v: f64) -> Result<f64, E> {
            Ok(v)
        }
        fn visit_i64<E>(self, v: i64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_u64<E>(self, v: u64) -> Result<f64, E> {
            Ok(v as f64)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<f64, E> {
            parse_nonfinite(v).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(V)
}

/// One line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    Run(RunRecord),
    Model(ModelRecord),
    Dataset(DatasetRecord),
    Scalar(ScalarRecord),
    Histogram(HistogramRecord),
    Image(ImageRecord),
    Tensor(TensorRecord),
    Predictions(PredictionsRecord),
    End(EndRecord),
}

/// First line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub name: String,
    #[serde(default = "default_project")]
    pub project: String,
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Version 2: a client-chosen identity, unique per project (see
    /// `docs/record-format.md`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_key: Option<String>,
}

pub fn default_project() -> String {
    "default".to_string()
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// The model summary. Fields other tools add are kept in `extra`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ModelRecord {
    #[serde(default)]
    pub layers: Vec<Layer>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_params: Option<u64>,
    /// `cross_entropy`, `mse`, or another loss name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optimizer: Option<Optimizer>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Layer {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(rename = "in", default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<u64>,
    #[serde(rename = "out", default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<u64>,
    /// `relu`, `tanh`, `sigmoid`, `softmax`, `none`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainable: Option<bool>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Optimizer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub momentum: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_decay: Option<f64>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Summary of one dataset split.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DatasetRecord {
    /// `train`, `val`, or another split name.
    pub split: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_features: Option<u64>,
    /// Count of NaN cells.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missing: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_mean: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feature_std: Option<Vec<Value>>,
    /// Class label → count (classification only). Order as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_counts: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One point of one scalar series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScalarRecord {
    pub step: u64,
    pub key: String,
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
}

/// One histogram: `counts.len() + 1 == edges.len()`, or both empty when every
/// value was non-finite.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramRecord {
    pub step: u64,
    pub key: String,
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
    #[serde(default)]
    pub nonfinite: u64,
}

/// Version 2: an image at a step — a PNG, or a feature map as floats.
/// Exactly one of `png` and (`shape`, `values`) is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    pub step: u64,
    pub key: String,
    /// The PNG file, base64 (standard alphabet, padded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub png: Option<String>,
    /// `[channels, height, width]` of a feature map.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<Vec<u64>>,
    /// Row-major floats of the feature map: channel, then row, then column.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
}

/// Version 2: a tensor at a step (a weight matrix, or a bounded sample of
/// it): `values` row-major, as many as the product of `shape`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TensorRecord {
    pub step: u64,
    pub key: String,
    pub shape: Vec<u64>,
    pub values: Vec<Value>,
    /// How the values were taken when they are not the whole tensor
    /// (e.g. `"rows:0-63"`); absent for the whole tensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
}

/// Version 2: a model's predictions on a split at a step, one entry per
/// sample: the true label and the class probabilities (all classes up to
/// 100; beyond that the top 20, with their class indices in `classes`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionsRecord {
    pub step: u64,
    pub split: String,
    /// The true class index of each sample.
    pub labels: Vec<u32>,
    /// Per sample: the probabilities of every class (`num_classes` ≤ 100),
    /// or of the classes in `classes` (top-k, k ≤ 20).
    pub probs: Vec<Vec<Value>>,
    /// Per sample: the class indices `probs` refers to (top-k only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<Vec<u32>>>,
    /// The number of classes; required with `classes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_classes: Option<u32>,
    /// Per sample: an id to find it again (a string or an integer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<f64>,
}

impl Record {
    /// The wire name of the record's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Record::Run(_) => "run",
            Record::Model(_) => "model",
            Record::Dataset(_) => "dataset",
            Record::Scalar(_) => "scalar",
            Record::Histogram(_) => "histogram",
            Record::Image(_) => "image",
            Record::Tensor(_) => "tensor",
            Record::Predictions(_) => "predictions",
            Record::End(_) => "end",
        }
    }
}

/// Last line of a recording.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EndRecord {
    /// `finished`, `failed` or `crashed`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<u64>,
}

/// Writes records as NDJSON, one per line.
pub fn to_ndjson(records: &[Record]) -> String {
    let mut out = String::new();
    for r in records {
        out.push_str(&serde_json::to_string(r).expect("records serialise"));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonfinite_values_round_trip_as_strings() {
        let line =
            r#"{"type":"scalar","step":12,"key":"train/loss","value":"NaN","time":1700011003.5}"#;
        let r: Record = serde_json::from_str(line).unwrap();
        match &r {
            Record::Scalar(s) => assert!(s.value.0.is_nan()),
            other => panic!("{other:?}"),
        }
        assert_eq!(serde_json::to_string(&r).unwrap(), line);
        for (text, want) in [
            ("\"Infinity\"", f64::INFINITY),
            ("\"-Infinity\"", f64::NEG_INFINITY),
            ("2", 2.0),
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(v.0, want);
            assert_eq!(
                serde_json::to_string(&v).unwrap().trim_end_matches(".0"),
                text
            );
        }
        assert!(serde_json::from_str::<Value>("\"nan\"").is_err());
    }

    #[test]
    fn model_keeps_unknown_fields() {
        let line = r#"{"type":"model","layers":[{"name":"fc1","type":"Linear","in":4,"out":8,"params":40,"activation":"relu","trainable":true,"dropout":0.1}],"total_params":40,"loss":"mse","optimizer":{"name":"sgd","lr":0.1,"momentum":0.9,"weight_decay":0.0},"framework":"torch"}"#;
        let r: Record = serde_json::from_str(line).unwrap();
        let back: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(
            back,
            serde_json::from_str::<serde_json::Value>(line).unwrap()
        );
    }
}
