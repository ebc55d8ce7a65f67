//! The checks behind each fuzz target, kept out of the `afl` binaries so the
//! corpus can also be replayed with `cargo test` (tests/corpus.rs) without
//! AFL installed. Each `check_*` must not panic on any input; a panic (a bug
//! in trainlens, or a broken invariant asserted here) is what AFL records as
//! a crash.

use trainlens::http::AppError;
use trainlens::ingest::{self, Recording, RunLine};
use trainlens::record::{self, EndRecord, Record, ScalarRecord, Value};

/// Limit used for the gzip target (the server's default is 32 MiB; a smaller
/// one keeps executions fast and reaches the limit path).
pub const GUNZIP_LIMIT: usize = 1 << 20;

/// First byte chooses the [`RunLine`] (odd: `Required`, even: `Forbidden`;
/// the seeds use `1` and `0`), the rest is the body.
pub fn split_run_line(data: &[u8]) -> Option<(RunLine, &[u8])> {
    let (&first, body) = data.split_first()?;
    let run_line = if first & 1 == 1 {
        RunLine::Required
    } else {
        RunLine::Forbidden
    };
    Some((run_line, body))
}

/// The records of a parsed recording, in an order `parse_ndjson` accepts:
/// the run line first, the end record last.
pub fn to_records(rec: &Recording) -> Vec<Record> {
    let b = &rec.batch;
    let mut out = Vec::new();
    if let Some(run) = &rec.run {
        out.push(Record::Run(run.clone()));
    }
    if let Some(m) = &b.model {
        out.push(Record::Model(m.clone()));
    }
    out.extend(b.datasets.iter().cloned().map(Record::Dataset));
    for (key, points) in &b.scalars {
        for p in points {
            out.push(Record::Scalar(ScalarRecord {
                step: p.step,
                key: key.clone(),
                value: Value(p.value),
                time: p.time,
            }));
        }
    }
    out.extend(b.histograms.iter().cloned().map(Record::Histogram));
    out.extend(b.images.iter().cloned().map(Record::Image));
    out.extend(b.tensors.iter().cloned().map(Record::Tensor));
    out.extend(b.predictions.iter().cloned().map(Record::Predictions));
    if let Some((status, step)) = b.end {
        out.push(Record::End(EndRecord {
            status: status.as_str().to_string(),
            step,
        }));
    }
    out
}

/// Invariants of an accepted batch that the record format promises: steps
/// are 0..=2^63-1, keys are valid, times are finite unix seconds.
fn check_points(batch: &trainlens::model::Batch) {
    for (key, points) in &batch.scalars {
        assert!(
            ingest::validate_key("key", key).is_ok(),
            "accepted an invalid key {key:?}"
        );
        for p in points {
            assert!(p.step <= ingest::MAX_STEP, "accepted step {}", p.step);
            if let Some(t) = p.time {
                assert!(t.is_finite(), "accepted a non-finite time {t}");
            }
        }
    }
}

/// `parse_ndjson` must not panic. On an error naming a line, the line is in
/// the body. On success: the recording written back in the record format
/// (`record::to_ndjson`, what `trainlens export` writes) must parse again
/// with the same `RunLine`, and writing that out again gives the same text —
/// the format promises values (NaN and ±Infinity included) are "stored
/// bit-exact and returned the same way" and unknown model/dataset fields are
/// kept. Texts are compared rather than structs so that NaN equals NaN, with
/// each line's top-level keys sorted (see [`top_level_sorted`]).
pub fn check_ndjson(data: &[u8]) {
    let Some((run_line, body)) = split_run_line(data) else {
        return;
    };
    let rec = match ingest::parse_ndjson(body, run_line) {
        Ok(rec) => rec,
        Err(e) => {
            if let Some(line) = e.line {
                let lines = body.split(|&b| b == b'\n').count();
                assert!(
                    (1..=lines).contains(&line),
                    "error names line {line} of a {lines}-line body: {e}"
                );
            }
            return;
        }
    };
    assert_eq!(run_line == RunLine::Required, rec.run.is_some());
    check_points(&rec.batch);
    let first = record::to_ndjson(&to_records(&rec));
    let again = match ingest::parse_ndjson(first.as_bytes(), run_line) {
        Ok(again) => again,
        Err(e) => panic!("the written-back recording is refused: {e}\n{first}"),
    };
    assert_eq!(
        rec.batch.record_count(),
        again.batch.record_count(),
        "record count changed"
    );
    let second = record::to_ndjson(&to_records(&again));
    assert_eq!(
        top_level_sorted(&first),
        top_level_sorted(&second),
        "the round trip changed the recording"
    );
}

/// Each line of an NDJSON text with its top-level keys sorted, nested
/// objects untouched. The order of a line's top-level fields is not kept:
/// `parse_line` takes `type` out with `serde_json::Map::remove`, which under
/// `preserve_order` is a `swap_remove` (the last key moves to `type`'s
/// place), so a model's or dataset's unknown top-level fields come back
/// reordered (`{"type":"model","a":1,"b":2}` is written back with `b`
/// before `a`). The format promises those fields are kept, not their order,
/// so that is not treated as a failure; every nested object (e.g. a
/// dataset's `class_counts`, "order as sent") is still compared in order.
fn top_level_sorted(ndjson: &str) -> Vec<String> {
    ndjson
        .lines()
        .map(|line| {
            let serde_json::Value::Object(obj) =
                serde_json::from_str::<serde_json::Value>(line).expect("to_ndjson writes JSON")
            else {
                panic!("to_ndjson wrote a line that is not an object: {line}");
            };
            let mut fields: Vec<(String, serde_json::Value)> = obj.into_iter().collect();
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            fields
                .iter()
                .map(|(k, v)| format!("{}:{v}", serde_json::Value::from(k.as_str())))
                .collect::<Vec<_>>()
                .join(",")
        })
        .collect()
}

/// `parse_columnar` must not panic. On success the batch holds only
/// scalars, with valid keys, steps and times, as many points as the body's
/// steps, and written back as one `{"series":[...]}` body it parses to the
/// same series (compared as text so that NaN equals NaN).
pub fn check_columnar(data: &[u8]) {
    let Ok(batch) = ingest::parse_columnar(data) else {
        return;
    };
    assert!(
        batch.histograms.is_empty()
            && batch.model.is_none()
            && batch.datasets.is_empty()
            && batch.images.is_empty()
            && batch.tensors.is_empty()
            && batch.predictions.is_empty()
            && batch.end.is_none(),
        "a columnar batch holds scalars only"
    );
    check_points(&batch);
    let first = columnar_body(&batch);
    let again = match ingest::parse_columnar(first.as_bytes()) {
        Ok(again) => again,
        Err(e) => panic!("the written-back batch is refused: {e}\n{first}"),
    };
    assert_eq!(batch.point_count(), again.point_count());
    assert_eq!(first, columnar_body(&again), "the round trip changed the batch");
}

fn columnar_body(batch: &trainlens::model::Batch) -> String {
    let series: Vec<serde_json::Value> = batch
        .scalars
        .iter()
        .map(|(key, points)| {
            serde_json::json!({
                "key": key,
                "steps": points.iter().map(|p| p.step).collect::<Vec<_>>(),
                "values": points.iter().map(|p| Value(p.value)).collect::<Vec<_>>(),
                "times": points.iter().map(|p| p.time).collect::<Vec<_>>(),
            })
        })
        .collect();
    serde_json::json!({ "series": series }).to_string()
}

/// `gunzip` must not panic; on success the output is at most the limit, and
/// the limit is exact: the same body inflates to the same bytes with a
/// limit of exactly its length, and is a 413 with one byte less.
pub fn check_gunzip(data: &[u8]) {
    let out = match trainlens::http::extract::gunzip(data, GUNZIP_LIMIT) {
        Ok(out) => out,
        Err(AppError::PayloadTooLarge(l)) => {
            assert_eq!(l, GUNZIP_LIMIT);
            return;
        }
        Err(_) => return,
    };
    assert!(
        out.len() <= GUNZIP_LIMIT,
        "inflated {} bytes, over the limit of {GUNZIP_LIMIT}",
        out.len()
    );
    match trainlens::http::extract::gunzip(data, out.len()) {
        Ok(exact) => assert_eq!(exact, out, "a limit of the exact length changed the output"),
        Err(e) => panic!("refused with a limit of its exact length {}: {e}", out.len()),
    }
    if !out.is_empty() {
        assert!(
            matches!(
                trainlens::http::extract::gunzip(data, out.len() - 1),
                Err(AppError::PayloadTooLarge(_))
            ),
            "{} bytes accepted under a limit of {}",
            out.len(),
            out.len() - 1
        );
    }
}
