//! Parsing and validation of what clients send: NDJSON in the record format
//! and the columnar batch. Pure: bytes in, a validated [`Batch`] or an
//! [`InputError`] naming the line and field out. Used by the HTTP API and by
//! `trainlens import`.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::model::{Batch, Point, RunStatus};
use crate::record::{
    DatasetRecord, EndRecord, HistogramRecord, ImageRecord, ModelRecord, PredictionsRecord,
    RunRecord, ScalarRecord, TensorRecord, Value,
};

/// Longest metric key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Longest project or run name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Steps are stored as signed 64-bit integers.
pub const MAX_STEP: u64 = i64::MAX as u64;
/// Most classes whose probabilities a `predictions` record lists in full
/// (a rule of the record format, not a tunable limit).
pub const MAX_FULL_CLASSES: usize = 100;
/// Most classes per sample in top-k `predictions` (format rule).
pub const MAX_TOP_K: usize = 20;

/// The size limits on what clients send, each answered with 413 naming it.
/// The defaults fit real large-model runs; an operator changes them with
/// `--limit NAME=VALUE` (or `TRAINLENS_LIMITS="NAME=VALUE,…"`), NAME being a
/// field below (see [`Limits::NAMES`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest run config, as JSON, in bytes.
    pub max_config_bytes: usize,
    /// Most tags on a run.
    pub max_tags: usize,
    /// Most scalar series (keys) in one run: a 100-block transformer that
    /// logs six statistics per layer has about 600.
    pub max_keys_per_run: usize,
    /// Most layers in a model record.
    pub max_layers: usize,
    /// Most features (means, stds) or classes in a dataset record.
    pub max_dataset_features: usize,
    /// Most bins in a histogram.
    pub max_histogram_bins: usize,
    /// Largest PNG of an `image` record, decoded, in bytes.
    pub max_image_png_bytes: usize,
    /// Most floats in a feature map (`image` with `shape`) or a `tensor`.
    pub max_tensor_values: usize,
    /// Most samples in one `predictions` record.
    pub max_prediction_samples: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_config_bytes: 1024 * 1024,
            max_tags: 100,
            max_keys_per_run: 100_000,
            max_layers: 10_000,
            max_dataset_features: 10_000,
            max_histogram_bins: 1_000,
            max_image_png_bytes: 4 * 1024 * 1024,
            max_tensor_values: 1 << 20,
            max_prediction_samples: 20_000,
        }
    }
}

impl Limits {
    /// The names `--limit` accepts.
    pub const NAMES: [&'static str; 9] = [
        "max_config_bytes",
        "max_tags",
        "max_keys_per_run",
        "max_layers",
        "max_dataset_features",
        "max_histogram_bins",
        "max_image_png_bytes",
        "max_tensor_values",
        "max_prediction_samples",
    ];

    fn slot(&mut self, name: &str) -> Option<&mut usize> {
        Some(match name {
            "max_config_bytes" => &mut self.max_config_bytes,
            "max_tags" => &mut self.max_tags,
            "max_keys_per_run" => &mut self.max_keys_per_run,
            "max_layers" => &mut self.max_layers,
            "max_dataset_features" => &mut self.max_dataset_features,
            "max_histogram_bins" => &mut self.max_histogram_bins,
            "max_image_png_bytes" => &mut self.max_image_png_bytes,
            "max_tensor_values" => &mut self.max_tensor_values,
            "max_prediction_samples" => &mut self.max_prediction_samples,
            _ => return None,
        })
    }

    /// Sets one limit from `NAME=VALUE` (VALUE a positive integer).
    pub fn set(&mut self, assignment: &str) -> Result<(), String> {
        let (name, value) = assignment
            .split_once('=')
            .ok_or_else(|| format!("{assignment:?} is not NAME=VALUE"))?;
        let name = name.trim();
        let value: usize = value
            .trim()
            .parse()
            .ok()
            .filter(|v| *v > 0)
            .ok_or_else(|| format!("{name}: {value:?} is not a positive integer"))?;
        let slot = self.slot(name).ok_or_else(|| {
            format!(
                "no limit {name:?}; the limits are {}",
                Self::NAMES.join(", ")
            )
        })?;
        *slot = value;
        Ok(())
    }
}

/// The first bytes of every PNG file.
pub const PNG_SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";

/// 413 naming `what` and its limit when `n > limit`.
pub fn limit(field: &str, n: usize, max: usize, what: &str, name: &str) -> Result<(), InputError> {
    if n > max {
        return Err(InputError::too_large(
            field,
            format!("{what}: {n} is over the limit of {max} ({name})"),
        ));
    }
    Ok(())
}

/// Why a request body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// `true`: the body is not what the endpoint reads (400);
    /// `false`: it parsed but a value is not allowed (422).
    pub malformed: bool,
    /// `true`: a value is over a size limit (413); the message names it.
    pub too_large: bool,
    pub code: &'static str,
    pub message: String,
    /// The offending field, as a path (`series[0].steps[3]`, `value`).
    pub field: Option<String>,
    /// 1-based line of an NDJSON body.
    pub line: Option<usize>,
}

impl InputError {
    pub fn malformed(
        code: &'static str,
        field: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        InputError {
            malformed: true,
            too_large: false,
            code,
            message: message.into(),
            field,
            line: None,
        }
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        InputError {
            malformed: false,
            too_large: false,
            code: "invalid_value",
            message: message.into(),
            field: Some(field.into()),
            line: None,
        }
    }

    /// A value over a size limit (413); `message` names the limit.
    pub fn too_large(field: impl Into<String>, message: impl Into<String>) -> Self {
        InputError {
            malformed: false,
            too_large: true,
            code: "too_large",
            message: message.into(),
            field: Some(field.into()),
            line: None,
        }
    }

    fn at_line(mut self, line: usize) -> Self {
        self.line = Some(line);
        self.message = format!("line {line}: {}", self.message);
        self
    }
}

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} (field `{field}`)", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for InputError {}

/// Whether an NDJSON body may or must start with a `run` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunLine {
    /// Ingest into an existing run: a `run` line is refused.
    Forbidden,
    /// A whole recording: the first line must be `run`.
    Required,
}

/// A parsed NDJSON body.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    pub run: Option<RunRecord>,
    pub batch: Batch,
}

pub fn validate_key(field: &str, key: &str) -> Result<(), InputError> {
    if key.is_empty() {
        return Err(InputError::invalid(field, "key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(InputError::invalid(
            field,
            format!(
                "key is {} bytes long; the limit is {MAX_KEY_BYTES}",
                key.len()
            ),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(InputError::invalid(
            field,
            "key must not contain control characters",
        ));
    }
    Ok(())
}

pub fn validate_name(field: &str, name: &str) -> Result<(), InputError> {
    if name.contains('\0') {
        return Err(InputError::invalid(
            field,
            format!("{field} must not contain a NUL character"),
        ));
    }
    if name.trim().is_empty() {
        return Err(InputError::invalid(
            field,
            format!("{field} must not be empty"),
        ));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(InputError::invalid(
            field,
            format!("{field} is longer than {MAX_NAME_BYTES} bytes"),
        ));
    }
    Ok(())
}

pub fn validate_tags(tags: &[String], lim: &Limits) -> Result<(), InputError> {
    limit(
        "tags",
        tags.len(),
        lim.max_tags,
        "tags on a run",
        "max_tags",
    )?;
    for (i, t) in tags.iter().enumerate() {
        validate_name(&format!("tags[{i}]"), t)?;
    }
    Ok(())
}

/// Checks a run line (or a create-run body).
pub fn validate_run(run: &RunRecord, lim: &Limits) -> Result<(), InputError> {
    validate_name("name", &run.name)?;
    validate_name("project", &run.project)?;
    if !run.config.is_object() {
        return Err(InputError::invalid(
            "config",
            "config must be a JSON object",
        ));
    }
    let config_bytes = run.config.to_string().len();
    limit(
        "config",
        config_bytes,
        lim.max_config_bytes,
        "bytes of run config",
        "max_config_bytes",
    )?;
    if let Some(key) = &run.run_key {
        validate_key("run_key", key)?;
    }
    validate_tags(&run.tags, lim)
}

fn validate_model(m: &ModelRecord, lim: &Limits) -> Result<(), InputError> {
    limit(
        "layers",
        m.layers.len(),
        lim.max_layers,
        "layers in a model",
        "max_layers",
    )?;
    for (i, l) in m.layers.iter().enumerate() {
        if l.name.contains('\0') {
            return Err(InputError::invalid(
                format!("layers[{i}].name"),
                "layer names must not contain a NUL character",
            ));
        }
    }
    Ok(())
}

fn validate_dataset(d: &DatasetRecord, lim: &Limits) -> Result<(), InputError> {
    validate_name("split", &d.split)?;
    for (field, n) in [
        ("feature_mean", d.feature_mean.as_ref().map_or(0, Vec::len)),
        ("feature_std", d.feature_std.as_ref().map_or(0, Vec::len)),
        (
            "class_counts",
            d.class_counts.as_ref().map_or(0, |c| c.len()),
        ),
    ] {
        limit(
            field,
            n,
            lim.max_dataset_features,
            "entries in a dataset summary",
            "max_dataset_features",
        )?;
    }
    Ok(())
}

/// `values.len()` must be the product of `shape`, every dimension ≥ 1, and
/// within [`Limits::max_tensor_values`].
fn check_shape(shape: &[u64], values: usize, lim: &Limits) -> Result<(), InputError> {
    if shape.is_empty() {
        return Err(InputError::invalid(
            "shape",
            "shape must have at least one dimension",
        ));
    }
    let mut n: u64 = 1;
    for (i, d) in shape.iter().enumerate() {
        if *d == 0 {
            return Err(InputError::invalid(
                format!("shape[{i}]"),
                "dimensions must be at least 1",
            ));
        }
        n = n.saturating_mul(*d);
    }
    limit(
        "values",
        usize::try_from(n).unwrap_or(usize::MAX),
        lim.max_tensor_values,
        "values in a tensor or feature map",
        "max_tensor_values",
    )?;
    limit(
        "values",
        values,
        lim.max_tensor_values,
        "values in a tensor or feature map",
        "max_tensor_values",
    )?;
    if values as u64 != n {
        return Err(InputError::invalid(
            "values",
            format!("shape {shape:?} needs {n} values, got {values}"),
        ));
    }
    Ok(())
}

pub fn validate_image(img: &ImageRecord, lim: &Limits) -> Result<(), InputError> {
    validate_key("key", &img.key)?;
    check_step("step", img.step)?;
    match (&img.png, &img.shape, &img.values) {
        (Some(png), None, None) => {
            use base64::Engine;
            // Base64 is 4/3 of the bytes: refuse before decoding a huge one.
            limit(
                "png",
                png.len() / 4 * 3,
                lim.max_image_png_bytes,
                "bytes of PNG",
                "max_image_png_bytes",
            )?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(png)
                .map_err(|e| InputError::invalid("png", format!("png is not base64: {e}")))?;
            limit(
                "png",
                bytes.len(),
                lim.max_image_png_bytes,
                "bytes of PNG",
                "max_image_png_bytes",
            )?;
            if !bytes.starts_with(PNG_SIGNATURE) {
                return Err(InputError::invalid("png", "png does not hold a PNG file"));
            }
            Ok(())
        }
        (None, Some(shape), Some(values)) => {
            if shape.len() != 3 {
                return Err(InputError::invalid(
                    "shape",
                    "a feature map's shape is [channels, height, width]",
                ));
            }
            check_shape(shape, values.len(), lim)
        }
        _ => Err(InputError::invalid(
            "png",
            "an image has either `png`, or `shape` and `values`",
        )),
    }
}

fn validate_tensor(t: &TensorRecord, lim: &Limits) -> Result<(), InputError> {
    validate_key("key", &t.key)?;
    check_step("step", t.step)?;
    check_shape(&t.shape, t.values.len(), lim)
}

fn validate_predictions(p: &PredictionsRecord, lim: &Limits) -> Result<(), InputError> {
    validate_name("split", &p.split)?;
    check_step("step", p.step)?;
    let n = p.labels.len();
    limit(
        "labels",
        n,
        lim.max_prediction_samples,
        "samples in a predictions record",
        "max_prediction_samples",
    )?;
    if n == 0 {
        return Err(InputError::invalid(
            "labels",
            "predictions need at least one sample",
        ));
    }
    if p.probs.len() != n {
        return Err(InputError::invalid(
            "probs",
            format!("{} rows of probs for {n} labels", p.probs.len()),
        ));
    }
    let classes = match &p.classes {
        None => {
            let width = p.num_classes.map_or(p.probs[0].len(), |c| c as usize);
            limit(
                "probs[0]",
                width,
                MAX_FULL_CLASSES,
                "classes listed in full (use top-k `classes` beyond)",
                "MAX_FULL_CLASSES",
            )?;
            if let Some(i) = p.probs.iter().position(|row| row.len() != width) {
                return Err(InputError::invalid(
                    format!("probs[{i}]"),
                    format!("every row needs {width} probabilities"),
                ));
            }
            width
        }
        Some(top) => {
            let Some(num) = p.num_classes else {
                return Err(InputError::invalid(
                    "num_classes",
                    "top-k predictions need num_classes",
                ));
            };
            if top.len() != n {
                return Err(InputError::invalid(
                    "classes",
                    format!("{} rows of classes for {n} labels", top.len()),
                ));
            }
            for (i, (row, probs)) in top.iter().zip(&p.probs).enumerate() {
                limit(
                    &format!("classes[{i}]"),
                    row.len(),
                    MAX_TOP_K,
                    "classes per sample in top-k predictions",
                    "MAX_TOP_K",
                )?;
                if row.len() != probs.len() {
                    return Err(InputError::invalid(
                        format!("probs[{i}]"),
                        "one probability per listed class",
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                if let Some(j) = row.iter().position(|c| *c >= num || !seen.insert(*c)) {
                    return Err(InputError::invalid(
                        format!("classes[{i}][{j}]"),
                        format!("class indices are distinct and below num_classes ({num})"),
                    ));
                }
            }
            num as usize
        }
    };
    if let Some(i) = p.labels.iter().position(|l| *l as usize >= classes) {
        return Err(InputError::invalid(
            format!("labels[{i}]"),
            format!("labels are class indices below {classes}"),
        ));
    }
    for (i, row) in p.probs.iter().enumerate() {
        if let Some(j) = row
            .iter()
            .position(|v| !(v.0.is_finite() && (-1e-6..=1.0 + 1e-6).contains(&v.0)))
        {
            return Err(InputError::invalid(
                format!("probs[{i}][{j}]"),
                "probabilities are numbers from 0 to 1",
            ));
        }
    }
    if let Some(ids) = &p.ids {
        if ids.len() != n {
            return Err(InputError::invalid(
                "ids",
                format!("{} ids for {n} samples", ids.len()),
            ));
        }
        let ok = |v: &serde_json::Value| {
            v.is_i64()
                || v.is_u64()
                || v.as_str()
                    .is_some_and(|s| s.len() <= MAX_KEY_BYTES && !s.contains('\0'))
        };
        if let Some(i) = ids.iter().position(|v| !ok(v)) {
            return Err(InputError::invalid(
                format!("ids[{i}]"),
                "ids are integers or strings of at most 256 bytes",
            ));
        }
    }
    Ok(())
}

pub fn check_step(field: &str, step: u64) -> Result<(), InputError> {
    if step > MAX_STEP {
        return Err(InputError::invalid(
            field,
            format!("step {step} is larger than {MAX_STEP}"),
        ));
    }
    Ok(())
}

pub fn validate_histogram(h: &HistogramRecord, lim: &Limits) -> Result<(), InputError> {
    validate_key("key", &h.key)?;
    check_step("step", h.step)?;
    limit(
        "counts",
        h.counts.len(),
        lim.max_histogram_bins,
        "histogram bins",
        "max_histogram_bins",
    )?;
    let consistent =
        (h.edges.is_empty() && h.counts.is_empty()) || h.edges.len() == h.counts.len() + 1;
    if !consistent {
        return Err(InputError::invalid(
            "counts",
            format!(
                "a histogram needs one more edge than counts; got {} edges and {} counts",
                h.edges.len(),
                h.counts.len()
            ),
        ));
    }
    if let Some(i) = h.edges.iter().position(|e| !e.is_finite()) {
        return Err(InputError::invalid(
            format!("edges[{i}]"),
            "histogram edges must be finite numbers",
        ));
    }
    if let Some(i) = h.edges.windows(2).position(|w| w[1] < w[0]) {
        return Err(InputError::invalid(
            format!("edges[{}]", i + 1),
            "histogram edges must not decrease",
        ));
    }
    Ok(())
}

pub fn parse_end(end: &EndRecord) -> Result<(RunStatus, Option<u64>), InputError> {
    let status = match end.status.parse::<RunStatus>() {
        Ok(RunStatus::Running) | Err(_) => {
            return Err(InputError::invalid(
                "status",
                format!(
                    "status {:?} is not one of \"finished\", \"failed\", \"crashed\"",
                    end.status
                ),
            ));
        }
        Ok(s) => s,
    };
    if let Some(step) = end.step {
        check_step("step", step)?;
    }
    Ok((status, end.step))
}

/// Deserialises with the path of the failing field in the error.
fn from_value<T: DeserializeOwned>(v: serde_json::Value) -> Result<T, InputError> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        InputError::malformed("invalid_field", field, e.into_inner().to_string())
    })
}

/// [`from_value`], then `validate` within `lim`.
fn checked<T: DeserializeOwned>(
    v: serde_json::Value,
    lim: &Limits,
    validate: impl FnOnce(&T, &Limits) -> Result<(), InputError>,
) -> Result<T, InputError> {
    let t = from_value(v)?;
    validate(&t, lim)?;
    Ok(t)
}

/// Parses an NDJSON body in the record format, within the default
/// [`Limits`]. Blank lines are skipped.
pub fn parse_ndjson(body: &[u8], run_line: RunLine) -> Result<Recording, InputError> {
    parse_ndjson_within(body, run_line, &Limits::default())
}

/// [`parse_ndjson`] within `lim`.
pub fn parse_ndjson_within(
    body: &[u8],
    run_line: RunLine,
    lim: &Limits,
) -> Result<Recording, InputError> {
    let mut rec = Recording::default();
    let mut seen_any = false;
    for (i, line) in body.split(|&b| b == b'\n').enumerate() {
        let lineno = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let first = !seen_any;
        seen_any = true;
        parse_line(line, first, run_line, lim, &mut rec).map_err(|e| e.at_line(lineno))?;
    }
    if run_line == RunLine::Required && rec.run.is_none() {
        return Err(InputError::malformed(
            "missing_run",
            Some("type".into()),
            "a recording must start with a `run` line",
        ));
    }
    Ok(rec)
}

fn parse_line(
    line: &[u8],
    first: bool,
    run_line: RunLine,
    lim: &Limits,
    rec: &mut Recording,
) -> Result<(), InputError> {
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| InputError::malformed("invalid_json", None, format!("not valid JSON: {e}")))?;
    let serde_json::Value::Object(mut obj) = value else {
        return Err(InputError::malformed(
            "invalid_record",
            None,
            "each line must be a JSON object",
        ));
    };
    // shift_remove: the other fields keep the order they were sent in.
    let Some(serde_json::Value::String(kind)) = obj.shift_remove("type") else {
        return Err(InputError::malformed(
            "invalid_record",
            Some("type".into()),
            "each line needs a string `type` (run, model, dataset, scalar, histogram, end)",
        ));
    };
    if let Some(step) = obj.get("step").and_then(serde_json::Value::as_i64)
        && step < 0
    {
        return Err(InputError::invalid(
            "step",
            format!("step must be a non-negative integer, got {step}"),
        ));
    }
    let v = serde_json::Value::Object(obj);
    match kind.as_str() {
        "run" => {
            if run_line == RunLine::Forbidden {
                return Err(InputError::malformed(
                    "unexpected_run",
                    Some("type".into()),
                    "a `run` line starts a new run: use POST /api/v1/import for a whole recording",
                ));
            }
            if !first {
                return Err(InputError::malformed(
                    "unexpected_run",
                    Some("type".into()),
                    "`run` must be the first line and appear once",
                ));
            }
            rec.run = Some(checked(v, lim, validate_run)?);
        }
        _ if run_line == RunLine::Required && first => {
            return Err(InputError::malformed(
                "missing_run",
                Some("type".into()),
                format!("a recording must start with a `run` line, not `{kind}`"),
            ));
        }
        "scalar" => {
            let s: ScalarRecord = from_value(v)?;
            validate_key("key", &s.key)?;
            check_step("step", s.step)?;
            if s.time.is_some_and(|t| !t.is_finite()) {
                return Err(InputError::invalid(
                    "time",
                    "time must be a finite number of unix seconds",
                ));
            }
            rec.batch.scalars.entry(s.key).or_default().push(Point {
                step: s.step,
                value: s.value.0,
                time: s.time,
            });
        }
        "histogram" => rec
            .batch
            .histograms
            .push(checked(v, lim, validate_histogram)?),
        "model" => rec.batch.model = Some(checked(v, lim, validate_model)?),
        "image" => rec.batch.images.push(checked(v, lim, validate_image)?),
        "tensor" => rec.batch.tensors.push(checked(v, lim, validate_tensor)?),
        "predictions" => rec
            .batch
            .predictions
            .push(checked(v, lim, validate_predictions)?),
        "dataset" => {
            let d: DatasetRecord = checked(v, lim, validate_dataset)?;
            rec.batch.datasets.retain(|old| old.split != d.split);
            rec.batch.datasets.push(d);
        }
        "end" => rec.batch.end = Some(parse_end(&from_value::<EndRecord>(v)?)?),
        other => {
            return Err(InputError::malformed(
                "invalid_record",
                Some("type".into()),
                format!(
                    "unknown record type {other:?}; expected run, model, dataset, scalar, histogram, image, tensor, predictions or end"
                ),
            ));
        }
    }
    Ok(())
}

/// One series of a columnar batch.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Columns {
    key: String,
    steps: Vec<i64>,
    values: Vec<Value>,
    #[serde(default)]
    times: Option<Vec<Option<f64>>>,
}

/// `{"series":[Columns…]}` or a single `Columns` object.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ColumnarBody {
    #[serde(default)]
    series: Option<Vec<Columns>>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    steps: Option<Vec<i64>>,
    #[serde(default)]
    values: Option<Vec<Value>>,
    #[serde(default)]
    times: Option<Vec<Option<f64>>>,
}

/// Parses one JSON document, naming the failing field in the error.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, InputError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            "invalid_json"
        } else {
            "invalid_field"
        };
        InputError::malformed(code, (path != ".").then_some(path), inner.to_string())
    })?;
    de.end()
        .map_err(|e| InputError::malformed("invalid_json", None, e.to_string()))?;
    Ok(value)
}

/// Parses the columnar batch: `{"series":[{"key","steps","values","times"?}]}`
/// or one such series object on its own.
pub fn parse_columnar(body: &[u8]) -> Result<Batch, InputError> {
    let parsed: ColumnarBody = parse_json(body)?;
    let (list, prefix) = match parsed {
        ColumnarBody {
            series: Some(list),
            key: None,
            steps: None,
            values: None,
            times: None,
        } => (list, true),
        ColumnarBody {
            series: None,
            key: Some(key),
            steps: Some(steps),
            values: Some(values),
            times,
        } => (
            vec![Columns {
                key,
                steps,
                values,
                times,
            }],
            false,
        ),
        ColumnarBody {
            series: None,
            key: None,
            ..
        } => {
            return Err(InputError::malformed(
                "invalid_field",
                Some("series".into()),
                "expected {\"series\":[{\"key\",\"steps\",\"values\"}]} or one {\"key\",\"steps\",\"values\"} object",
            ));
        }
        ColumnarBody {
            series: Some(_), ..
        } => {
            return Err(InputError::malformed(
                "invalid_field",
                Some("series".into()),
                "send either `series` or a single key/steps/values, not both",
            ));
        }
        ColumnarBody { steps: None, .. } => {
            return Err(InputError::malformed(
                "invalid_field",
                Some("steps".into()),
                "missing field `steps`",
            ));
        }
        ColumnarBody { .. } => {
            return Err(InputError::malformed(
                "invalid_field",
                Some("values".into()),
                "missing field `values`",
            ));
        }
    };

    let mut batch = Batch::default();
    for (i, cols) in list.into_iter().enumerate() {
        let at = |field: &str| {
            if prefix {
                format!("series[{i}].{field}")
            } else {
                field.to_string()
            }
        };
        validate_key(&at("key"), &cols.key)?;
        if cols.values.len() != cols.steps.len() {
            return Err(InputError::invalid(
                at("values"),
                format!(
                    "{} values for {} steps; they must pair up",
                    cols.values.len(),
                    cols.steps.len()
                ),
            ));
        }
        if let Some(times) = &cols.times
            && times.len() != cols.steps.len()
        {
            return Err(InputError::invalid(
                at("times"),
                format!(
                    "{} times for {} steps; they must pair up",
                    times.len(),
                    cols.steps.len()
                ),
            ));
        }
        if let Some(j) = cols.steps.iter().position(|&s| s < 0) {
            return Err(InputError::invalid(
                at(&format!("steps[{j}]")),
                format!("step must be a non-negative integer, got {}", cols.steps[j]),
            ));
        }
        let points = batch.scalars.entry(cols.key).or_default();
        points.reserve(cols.steps.len());
        for (j, (&step, value)) in cols.steps.iter().zip(&cols.values).enumerate() {
            let time = cols.times.as_ref().and_then(|t| t[j]);
            points.push(Point {
                step: step as u64,
                value: value.0,
                time,
            });
        }
    }
    Ok(batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err_ndjson(body: &str) -> InputError {
        parse_ndjson(body.as_bytes(), RunLine::Forbidden).unwrap_err()
    }

    #[test]
    fn unknown_fields_keep_the_order_they_were_sent_in() {
        // Found by fuzzing: removing `type` used to swap the last field into
        // its place, so every import/export cycle reordered them.
        let body = r#"{"type":"model","a":1,"b":2,"c":3}"#;
        let rec = parse_ndjson(body.as_bytes(), RunLine::Forbidden).unwrap();
        let extra = rec.batch.model.unwrap().extra;
        assert_eq!(extra.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn ndjson_mixed_lines_parse_into_one_batch() {
        let body = concat!(
            r#"{"type":"scalar","step":0,"key":"train/loss","value":2.3,"time":1700000000.5}"#,
            "\n\r\n",
            r#"{"type":"scalar","step":1,"key":"train/loss","value":"NaN"}"#,
            "\r\n",
            r#"{"type":"histogram","step":1,"key":"weights/fc1","edges":[0,1,2],"counts":[3,4],"nonfinite":1}"#,
            "\n",
            r#"{"type":"dataset","split":"train","n":10}"#,
            "\n",
            r#"{"type":"end","status":"failed","step":1}"#,
        );
        let rec = parse_ndjson(body.as_bytes(), RunLine::Forbidden).unwrap();
        let loss = &rec.batch.scalars["train/loss"];
        assert_eq!(loss.len(), 2);
        assert_eq!(loss[0].time, Some(1700000000.5));
        assert!(loss[1].value.is_nan());
        assert_eq!(rec.batch.histograms[0].nonfinite, 1);
        assert_eq!(rec.batch.end, Some((RunStatus::Failed, Some(1))));
        assert_eq!(rec.batch.record_count(), 5);
    }

    #[test]
    fn ndjson_errors_name_line_and_field() {
        let e = err_ndjson(
            "{\"type\":\"scalar\",\"step\":0,\"key\":\"a\",\"value\":1}\n{\"type\":\"scalar\",",
        );
        assert!(e.malformed);
        assert_eq!((e.line, e.code), (Some(2), "invalid_json"));

        let e = err_ndjson("\n{\"type\":\"scalar\",\"step\":0,\"key\":\"a\",\"value\":\"abc\"}");
        assert_eq!((e.line, e.field.as_deref()), (Some(2), Some("value")));
        assert!(e.message.starts_with("line 2: "), "{}", e.message);

        let e = err_ndjson("{\"type\":\"scalar\",\"step\":-3,\"key\":\"a\",\"value\":1}");
        assert!(!e.malformed);
        assert_eq!(e.field.as_deref(), Some("step"));

        let e = err_ndjson("{\"type\":\"scalar\",\"step\":1.5,\"key\":\"a\",\"value\":1}");
        assert!(e.malformed);
        assert_eq!(e.field.as_deref(), Some("step"));

        let e = err_ndjson("{\"type\":\"scalar\",\"step\":1,\"key\":\"\",\"value\":1}");
        assert_eq!((e.malformed, e.field.as_deref()), (false, Some("key")));

        let long = "k".repeat(257);
        let e = err_ndjson(&format!(
            "{{\"type\":\"scalar\",\"step\":1,\"key\":\"{long}\",\"value\":1}}"
        ));
        assert_eq!((e.malformed, e.field.as_deref()), (false, Some("key")));

        let e = err_ndjson(
            "{\"type\":\"histogram\",\"step\":1,\"key\":\"w\",\"edges\":[0,1],\"counts\":[1,2]}",
        );
        assert_eq!((e.malformed, e.field.as_deref()), (false, Some("counts")));

        let e =
            err_ndjson("{\"type\":\"model\",\"layers\":[{\"name\":\"fc1\",\"params\":\"many\"}]}");
        assert_eq!(e.field.as_deref(), Some("layers[0].params"));

        let e = err_ndjson("{\"type\":\"end\",\"status\":\"running\"}");
        assert_eq!(e.field.as_deref(), Some("status"));

        let e = err_ndjson("{\"type\":\"run\",\"name\":\"x\"}");
        assert_eq!(e.code, "unexpected_run");
        let e = err_ndjson("{\"type\":\"weird\"}");
        assert_eq!(e.field.as_deref(), Some("type"));
        let e = err_ndjson("[1,2]");
        assert_eq!(e.code, "invalid_record");
    }

    #[test]
    fn recording_needs_run_first() {
        let ok = parse_ndjson(
            b"{\"type\":\"run\",\"name\":\"r\"}\n{\"type\":\"end\",\"status\":\"finished\"}",
            RunLine::Required,
        )
        .unwrap();
        assert_eq!(ok.run.unwrap().project, "default");
        let e = parse_ndjson(
            b"{\"type\":\"end\",\"status\":\"finished\"}",
            RunLine::Required,
        )
        .unwrap_err();
        assert_eq!(e.code, "missing_run");
        let e = parse_ndjson(b"", RunLine::Required).unwrap_err();
        assert_eq!(e.code, "missing_run");
        let e = parse_ndjson(
            b"{\"type\":\"run\",\"name\":\"r\"}\n{\"type\":\"run\",\"name\":\"r\"}",
            RunLine::Required,
        )
        .unwrap_err();
        assert_eq!((e.code, e.line), ("unexpected_run", Some(2)));
        let e = parse_ndjson(
            b"{\"type\":\"run\",\"name\":\"r\",\"config\":[1]}",
            RunLine::Required,
        )
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("config"));
    }

    #[test]
    fn columnar_batches() {
        let b = parse_columnar(
            br#"{"series":[{"key":"a","steps":[0,1],"values":[1,"Infinity"],"times":[1.5,null]},{"key":"b","steps":[3],"values":[0.25]}]}"#,
        )
        .unwrap();
        assert_eq!(b.point_count(), 3);
        assert_eq!(b.scalars["a"][1].value, f64::INFINITY);
        assert_eq!(
            (b.scalars["a"][0].time, b.scalars["a"][1].time),
            (Some(1.5), None)
        );
        let single = parse_columnar(br#"{"key":"b","steps":[3],"values":[0.25]}"#).unwrap();
        assert_eq!(single.scalars["b"], b.scalars["b"]);
    }

    #[test]
    fn columnar_errors_name_the_field() {
        let field = |body: &str| {
            let e = parse_columnar(body.as_bytes()).unwrap_err();
            (e.malformed, e.field)
        };
        for (body, malformed, at) in [
            (
                r#"{"series":[{"key":"a","steps":[0,-1],"values":[1,2]}]}"#,
                false,
                "series[0].steps[1]",
            ),
            (
                r#"{"series":[{"key":"a","steps":[0,1],"values":[1]}]}"#,
                false,
                "series[0].values",
            ),
            (
                r#"{"series":[{"key":"a","steps":[0],"values":[1],"times":[]}]}"#,
                false,
                "series[0].times",
            ),
            (
                r#"{"series":[{"key":"","steps":[0],"values":[1]}]}"#,
                false,
                "series[0].key",
            ),
            (
                r#"{"series":[{"key":"a","steps":[0.5],"values":[1]}]}"#,
                true,
                "series[0].steps[0]",
            ),
            (
                r#"{"series":[{"key":"a","steps":[0],"values":["nan"]}]}"#,
                true,
                "series[0].values[0]",
            ),
            (r#"{"key":"a","steps":[0]}"#, true, "values"),
        ] {
            assert_eq!(field(body), (malformed, Some(at.to_string())), "{body}");
        }
        assert!(field(r#"{"series":[{"key":"a","steps":[0],"values":[1],"extra":1}]}"#).0);
        let e = parse_columnar(b"{\"series\":[").unwrap_err();
        assert_eq!(e.code, "invalid_json");
        let e = parse_columnar(b"{} {}").unwrap_err();
        assert!(e.malformed);
    }
}
