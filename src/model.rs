//! Domain types shared by every layer: what a run is, what a batch of data
//! is, and the enums that travel as words (run status, severity, finding
//! status), each parsed in one place.
//!
//! A leaf: it uses the record format's types (`crate::record`, itself a leaf)
//! and nothing else of ours, so `ingest`, `charts/` and `diagnostics/` can
//! import it without touching `store`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::record::{
    DatasetRecord, HistogramRecord, ImageRecord, ModelRecord, PredictionsRecord, RunRecord,
    TensorRecord, Value,
};

/// A word that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {got:?} is not one of {}", allowed.join(", "))]
pub struct ParseWordError {
    pub what: &'static str,
    pub got: String,
    pub allowed: &'static [&'static str],
}

/// `as_str`, `ALL`, `Display` and `FromStr` for an enum of wire words.
macro_rules! words {
    ($ty:ident, $what:literal, [$($variant:ident => $word:literal),+ $(,)?]) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::model::ParseWordError;
            fn from_str(s: &str) -> Result<Self, $crate::model::ParseWordError> {
                match s {
                    $($word => Ok($ty::$variant),)+
                    _ => Err($crate::model::ParseWordError {
                        what: $what,
                        got: s.to_string(),
                        allowed: Self::WORDS,
                    }),
                }
            }
        }
    };
}

pub(crate) use words;

/// Run status. `crashed` is for runs whose client went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
    Crashed,
}

words!(RunStatus, "status", [
    Running => "running",
    Finished => "finished",
    Failed => "failed",
    Crashed => "crashed",
]);

/// How bad a finding is. Ordered: `Info < Warning < Error < Critical`.
/// Warning and worse are "raised" (alerts fire, the run is marked sick).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
    Critical,
}

words!(Severity, "severity", [
    Info => "info",
    Warning => "warning",
    Error => "error",
    Critical => "critical",
]);

impl Severity {
    /// Warning or worse.
    pub fn is_raised(self) -> bool {
        self >= Severity::Warning
    }

    /// 0 (info) to 3 (critical): how the store orders and filters findings.
    pub fn rank(self) -> i64 {
        self as i64
    }
}

/// Whether a finding still holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FindingStatus {
    Open,
    Resolved,
}

words!(FindingStatus, "finding status", [
    Open => "open",
    Resolved => "resolved",
]);

/// One point of a scalar series.
#[derive(Debug, Clone, Copy)]
pub struct Point {
    pub step: u64,
    pub value: f64,
    /// Unix seconds when the client logged it.
    pub time: Option<f64>,
}

impl Point {
    pub fn new(step: u64, value: f64, time: Option<f64>) -> Point {
        Point { step, value, time }
    }
}

impl PartialEq for Point {
    /// Bitwise on floats, so that NaN equals NaN.
    fn eq(&self, other: &Self) -> bool {
        self.step == other.step
            && self.value.to_bits() == other.value.to_bits()
            && self.time.map(f64::to_bits) == other.time.map(f64::to_bits)
    }
}

/// What a client sends to create a run.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRun {
    pub project: String,
    pub name: String,
    pub config: serde_json::Value,
    pub tags: Vec<String>,
    /// A client-chosen identity, unique per project: creating a run with a
    /// key the project already has returns that run instead of a second one.
    pub run_key: Option<String>,
}

impl From<RunRecord> for NewRun {
    fn from(r: RunRecord) -> Self {
        NewRun {
            project: r.project,
            name: r.name,
            config: r.config,
            tags: r.tags,
            run_key: r.run_key,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Run {
    pub id: Uuid,
    pub project: String,
    pub name: String,
    pub status: RunStatus,
    /// `None` when the run was listed without its config
    /// ([`RunFilter::with_config`]); as stored otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<Config>,
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_key: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
    pub heartbeat_at: Option<f64>,
    pub end_step: Option<u64>,
    /// Increases with every write of the run's data.
    pub data_version: i64,
}

#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub project: Option<String>,
    pub status: Option<RunStatus>,
    pub limit: u32,
    pub offset: u32,
    /// Load each run's config: lists that do not show configs leave it
    /// off, so a page of runs costs the same whatever their configs weigh.
    pub with_config: bool,
}

/// A column the runs page sorts by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunSort {
    Name,
    Status,
    /// The worst open finding (warning or worse).
    Health,
    LastStep,
    /// The last value of the validation loss (roles: `diagnostics::names`).
    ValLoss,
    ValAcc,
    /// From creation to the last data.
    Duration,
    #[default]
    Started,
}

words!(RunSort, "sort", [
    Name => "name",
    Status => "status",
    Health => "health",
    LastStep => "step",
    ValLoss => "val_loss",
    ValAcc => "val_acc",
    Duration => "duration",
    Started => "started",
]);

/// A run's health: its worst open finding of warning or worse, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Healthy,
    Warning,
    Error,
    Critical,
}

words!(Health, "health", [
    Healthy => "ok",
    Warning => "warning",
    Error => "error",
    Critical => "critical",
]);

impl Health {
    /// The `severity_rank` of the worst open finding; 0 when healthy
    /// (info findings do not make a run sick).
    pub fn rank(self) -> i64 {
        self as i64
    }

    pub fn from_worst(worst: Option<Severity>) -> Health {
        match worst {
            Some(Severity::Critical) => Health::Critical,
            Some(Severity::Error) => Health::Error,
            Some(Severity::Warning) => Health::Warning,
            Some(Severity::Info) | None => Health::Healthy,
        }
    }
}

/// What the runs page asks for: filters, one sort column, a page.
#[derive(Debug, Clone, Default)]
pub struct RunTableQuery {
    pub project: Option<String>,
    pub status: Option<RunStatus>,
    pub health: Option<Health>,
    /// Runs carrying exactly this tag.
    pub tag: Option<String>,
    /// Runs whose name contains this (ASCII case-insensitive).
    pub search: Option<String>,
    pub sort: RunSort,
    pub descending: bool,
    pub limit: u32,
    pub offset: u32,
}

/// A run's config as stored: JSON text, passed through to API answers as it
/// is and parsed only where it is read ([`Config::parse`]), so that listing
/// runs never builds a tree of every config.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct Config(Box<serde_json::value::RawValue>);

impl Config {
    /// Checks that `text` is JSON (without building it).
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(Config)
    }

    pub fn from_value(value: &serde_json::Value) -> Self {
        Config(serde_json::value::to_raw_value(value).expect("a JSON value serialises"))
    }

    /// The JSON text, as stored.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    pub fn parse(&self) -> serde_json::Value {
        serde_json::from_str(self.text()).expect("a Config holds valid JSON")
    }
}

impl PartialEq for Config {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Project {
    pub name: String,
    pub runs: i64,
    pub created_at: f64,
}

/// A scalar series as listed for a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeriesInfo {
    pub key: String,
    pub count: i64,
    pub first_step: Option<u64>,
    pub last_step: Option<u64>,
    pub last_value: Option<Value>,
}

/// A downsampled read.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// Points stored in the requested step range.
    pub total: usize,
    pub points: Vec<Point>,
}

/// A series of step-keyed records (histograms, images, …) as listed for a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistogramKey {
    pub key: String,
    pub count: i64,
    pub first_step: u64,
    pub last_step: u64,
}

/// Everything one ingest request writes, validated (see `crate::ingest`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Points per key in arrival order; a repeated step's last point wins.
    pub scalars: BTreeMap<String, Vec<Point>>,
    pub histograms: Vec<HistogramRecord>,
    pub model: Option<ModelRecord>,
    pub datasets: Vec<DatasetRecord>,
    pub images: Vec<ImageRecord>,
    pub tensors: Vec<TensorRecord>,
    pub predictions: Vec<PredictionsRecord>,
    pub end: Option<(RunStatus, Option<u64>)>,
}

impl Batch {
    pub fn point_count(&self) -> usize {
        self.scalars.values().map(Vec::len).sum()
    }

    /// Records accepted (points, histograms, model, datasets, images,
    /// tensors, predictions, end).
    pub fn record_count(&self) -> usize {
        self.point_count()
            + self.histograms.len()
            + usize::from(self.model.is_some())
            + self.datasets.len()
            + self.images.len()
            + self.tensors.len()
            + self.predictions.len()
            + usize::from(self.end.is_some())
    }
}

/// Result of an ingest request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IngestOutcome {
    pub accepted: u64,
    /// True when the `Idempotency-Key` was seen before and nothing was written.
    pub replayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip_and_errors_name_the_choices() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>().unwrap(), *s);
        }
        for s in Severity::ALL {
            assert_eq!(s.to_string().parse::<Severity>().unwrap(), *s);
        }
        let e = "bad".parse::<FindingStatus>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "finding status \"bad\" is not one of open, resolved"
        );
        assert!("Running".parse::<RunStatus>().is_err(), "case matters");
    }

    #[test]
    fn severity_ranks_follow_the_order() {
        let ranks: Vec<i64> = Severity::ALL.iter().map(|s| s.rank()).collect();
        assert_eq!(ranks, [0, 1, 2, 3]);
        assert!(Severity::Warning.is_raised() && !Severity::Info.is_raised());
    }
}
