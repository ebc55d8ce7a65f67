//! Result types, statistics, PASS/FAIL verdicts and the markdown table.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::server::ServerStop;

pub const TARGET_SQLITE_INGEST_PPS: f64 = 1_000_000.0;
pub const TARGET_FULL_READ_MS: f64 = 50.0;
pub const TARGET_DOWNSAMPLED_READ_MS: f64 = 30.0;
pub const TARGET_BYTES_PER_POINT: f64 = 16.0;
/// 200 MB, decimal (10^6 bytes), the stricter reading of "MB".
pub const TARGET_PEAK_RSS_BYTES: u64 = 200_000_000;

#[derive(Serialize, Clone, Debug)]
pub struct LatencyStats {
    pub requests: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples_ms: Option<Vec<f64>>,
}

impl LatencyStats {
    /// "median / p90 ms", as the table shows a read's latency.
    fn median_p90(&self) -> String {
        format!("{:.1} / {:.1} ms", self.median_ms, self.p90_ms)
    }
}

/// Median (mean of the two middle values for an even count).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile, `p` in (0, 1].
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = (p * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

pub fn latency_stats(samples: &[f64], keep_samples: bool) -> LatencyStats {
    LatencyStats {
        requests: samples.len(),
        median_ms: median(samples),
        p90_ms: percentile(samples, 0.90),
        p99_ms: percentile(samples, 0.99),
        min_ms: samples.iter().copied().fold(f64::INFINITY, f64::min),
        max_ms: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        samples_ms: keep_samples.then(|| samples.iter().map(|x| round3(*x)).collect()),
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Serialize, Clone, Debug)]
pub struct Disk {
    /// Bytes counted for bytes/point (SQLite: all files in the data dir after
    /// shutdown; PostgreSQL: sum of pg_total_relation_size over user tables).
    pub total_bytes: u64,
    pub points: u64,
    pub bytes_per_point: f64,
    pub method: String,
    pub detail: BTreeMap<String, u64>,
}

#[derive(Serialize, Clone, Debug)]
pub struct IngestRep {
    pub rep: usize,
    pub points: u64,
    pub requests: usize,
    pub wall_secs: f64,
    pub points_per_sec: f64,
    /// Per-request latency of the 10k-point POSTs (as seen by each client).
    pub request_latency: LatencyStats,
    pub disk: Disk,
    pub server: ServerStop,
    /// Seconds from the last ingest response until the run's diagnosis
    /// covered all of its data (`GET /runs/{id}/findings` → `up_to_date`).
    pub diagnosis_lag_secs: f64,
}

#[derive(Serialize, Clone, Debug)]
pub struct IngestSummary {
    pub reps: Vec<IngestRep>,
    pub points_per_sec_median: f64,
    pub points_per_sec_min: f64,
    pub points_per_sec_max: f64,
    pub bytes_per_point_median: f64,
    pub peak_rss_bytes: u64,
}

impl IngestSummary {
    pub fn new(reps: Vec<IngestRep>) -> Self {
        let pps: Vec<f64> = reps.iter().map(|r| r.points_per_sec).collect();
        let bpp: Vec<f64> = reps.iter().map(|r| r.disk.bytes_per_point).collect();
        IngestSummary {
            points_per_sec_median: median(&pps),
            points_per_sec_min: pps.iter().copied().fold(f64::INFINITY, f64::min),
            points_per_sec_max: pps.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            bytes_per_point_median: median(&bpp),
            peak_rss_bytes: reps
                .iter()
                .map(|r| r.server.vm_hwm_bytes)
                .max()
                .unwrap_or(0),
            reps,
        }
    }
}

#[derive(Serialize, Clone, Debug)]
pub struct ReadBench {
    pub series_points: u64,
    pub max_points: Option<usize>,
    pub returned_points: usize,
    pub response_bytes: usize,
    /// Time from sending the request to having the whole body (JSON parsing
    /// and verification are done after the clock stops).
    pub latency: LatencyStats,
}

#[derive(Serialize, Clone, Debug)]
pub struct ReadSummary {
    /// Untimed setup: ingesting the two read series.
    pub setup_ingest_secs: f64,
    pub full: ReadBench,
    pub downsampled: ReadBench,
    pub server: ServerStop,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct BackendReport {
    pub backend: String,
    pub ingest: Option<IngestSummary>,
    pub ingest_error: Option<String>,
    pub reads: Option<ReadSummary>,
    pub reads_error: Option<String>,
    /// Max VmHWM over every server process this backend ran.
    pub peak_rss_bytes: Option<u64>,
    pub verdicts: BTreeMap<String, String>,
}

fn verdict(ok: bool) -> String {
    if ok { "PASS".into() } else { "FAIL".into() }
}

impl BackendReport {
    pub fn finish(&mut self) {
        let rss = [
            self.ingest.as_ref().map(|i| i.peak_rss_bytes),
            self.reads.as_ref().map(|r| r.server.vm_hwm_bytes),
        ];
        self.peak_rss_bytes = rss.iter().flatten().copied().max();
        let sqlite = self.backend == "sqlite";
        let mut v = BTreeMap::new();
        match &self.ingest {
            Some(i) => {
                v.insert(
                    "ingest_points_per_sec".into(),
                    if sqlite {
                        verdict(i.points_per_sec_median >= TARGET_SQLITE_INGEST_PPS)
                    } else {
                        "REPORT".into()
                    },
                );
                v.insert(
                    "bytes_per_point".into(),
                    verdict(i.bytes_per_point_median <= TARGET_BYTES_PER_POINT),
                );
            }
            None => {
                v.insert("ingest_points_per_sec".into(), "ERROR".into());
                v.insert("bytes_per_point".into(), "ERROR".into());
            }
        }
        match &self.reads {
            Some(r) => {
                v.insert(
                    "full_read".into(),
                    verdict(r.full.latency.median_ms <= TARGET_FULL_READ_MS),
                );
                v.insert(
                    "downsampled_read".into(),
                    verdict(r.downsampled.latency.median_ms <= TARGET_DOWNSAMPLED_READ_MS),
                );
            }
            None => {
                v.insert("full_read".into(), "ERROR".into());
                v.insert("downsampled_read".into(), "ERROR".into());
            }
        }
        v.insert(
            "peak_rss".into(),
            match self.peak_rss_bytes {
                Some(b) => verdict(b <= TARGET_PEAK_RSS_BYTES),
                None => "ERROR".into(),
            },
        );
        self.verdicts = v;
    }

    pub fn any_error(&self) -> bool {
        self.ingest_error.is_some() || self.reads_error.is_some()
    }

    pub fn any_fail(&self) -> bool {
        self.verdicts.values().any(|v| v == "FAIL")
    }
}

/// 1234567 -> "1,234,567".
pub fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub fn fmt_mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

pub struct TableInput<'a> {
    pub backends: &'a [BackendReport],
    pub reps: usize,
    pub clients: usize,
    pub keys: usize,
    pub steps: u64,
    pub batch: usize,
    pub full_points: u64,
    pub ds_points: u64,
    pub max_points: usize,
    pub read_requests: usize,
}

/// The final markdown table: one column per backend that was run.
pub fn table(t: &TableInput) -> String {
    let mut cols: Vec<(&str, Option<&BackendReport>)> = Vec::new();
    for name in ["sqlite", "postgres"] {
        if let Some(b) = t.backends.iter().find(|b| b.backend == name) {
            cols.push((
                if name == "sqlite" {
                    "SQLite"
                } else {
                    "PostgreSQL"
                },
                Some(b),
            ));
        }
    }
    let mut out = String::new();
    out.push_str("| Figure | Target |");
    for (name, _) in &cols {
        out.push_str(&format!(" {name} |"));
    }
    out.push('\n');
    out.push_str("|---|---|");
    for _ in &cols {
        out.push_str("---|");
    }
    out.push('\n');

    let v = |b: &BackendReport, k: &str| b.verdicts.get(k).cloned().unwrap_or_default();

    // A figure's row: `cell` of each backend, **ERROR** where it has none.
    let mut row = |label: String, target: &str, cell: &dyn Fn(&BackendReport) -> Option<String>| {
        out.push_str(&format!("| {label} | {target} |"));
        for (_, b) in &cols {
            let c = b
                .map(|b| cell(b).unwrap_or_else(|| "**ERROR**".into()))
                .unwrap_or_else(|| "not run".into());
            out.push_str(&format!(" {c} |"));
        }
        out.push('\n');
    };

    row(
        format!(
            "Ingest, {} clients, {} keys × {} steps = {} points: points/s, median (min–max) of {}",
            t.clients,
            t.keys,
            fmt_int(t.steps),
            fmt_int(t.keys as u64 * t.steps),
            t.reps
        ),
        "≥ 1,000,000 (SQLite); PostgreSQL: report only",
        &|b| {
            b.ingest.as_ref().map(|i| {
                format!(
                    "{} ({}–{}) **{}**",
                    fmt_int(i.points_per_sec_median as u64),
                    fmt_int(i.points_per_sec_min as u64),
                    fmt_int(i.points_per_sec_max as u64),
                    v(b, "ingest_points_per_sec")
                )
            })
        },
    );
    row(
        format!(
            "Ingest: latency of one {}-point POST, median of per-rep p50 / worst p99",
            fmt_int(t.batch as u64)
        ),
        "info",
        &|b| {
            b.ingest.as_ref().map(|i| {
                let p50: Vec<f64> = i.reps.iter().map(|r| r.request_latency.median_ms).collect();
                let p99 = i
                    .reps
                    .iter()
                    .map(|r| r.request_latency.p99_ms)
                    .fold(f64::NEG_INFINITY, f64::max);
                format!("{:.1} / {:.1} ms", median(&p50), p99)
            })
        },
    );
    row(
        format!(
            "Full read of a {}-point series: median / p90 of {}",
            fmt_int(t.full_points),
            t.read_requests
        ),
        "median ≤ 50 ms",
        &|b| {
            b.reads
                .as_ref()
                .map(|r| format!("{} **{}**", r.full.latency.median_p90(), v(b, "full_read")))
        },
    );
    row(
        format!(
            "max_points={} read of a {}-point series: median / p90 of {}",
            t.max_points,
            fmt_int(t.ds_points),
            t.read_requests
        ),
        "median ≤ 30 ms",
        &|b| {
            b.reads.as_ref().map(|r| {
                format!(
                    "{} ({} pts) **{}**",
                    r.downsampled.latency.median_p90(),
                    r.downsampled.returned_points,
                    v(b, "downsampled_read")
                )
            })
        },
    );
    row(
        "Bytes on disk per point (after ingest, median of reps)".into(),
        "≤ 16",
        &|b| {
            b.ingest.as_ref().map(|i| {
                format!(
                    "{:.2} **{}**",
                    i.bytes_per_point_median,
                    v(b, "bytes_per_point")
                )
            })
        },
    );
    row(
        "Server peak RSS (VmHWM, max over all server processes)".into(),
        "≤ 200 MB",
        &|b| {
            b.peak_rss_bytes
                .map(|r| format!("{} **{}**", fmt_mb(r), v(b, "peak_rss")))
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        let v: Vec<f64> = (1..=20).map(|x| x as f64).collect();
        assert_eq!(percentile(&v, 0.9), 18.0);
        assert_eq!(percentile(&v, 0.99), 20.0);
        assert_eq!(fmt_int(1_234_567), "1,234,567");
        assert_eq!(fmt_int(999), "999");
        assert_eq!(fmt_int(1000), "1,000");
    }
}
