//! CSV forms of stored data (pure: no database, no HTTP), for spreadsheets
//! and pandas:
//!
//! - a run's scalars in long form, one point per row: `key,step,time,value`,
//!   in the export's order (by step, then key); `time` is unix seconds
//!   (empty when the point has none); non-finite values are written `NaN`,
//!   `Infinity`, `-Infinity` (what pandas' `read_csv` reads as floats);
//! - a project's runs table, one run per row: `id, name, status, created_at,
//!   updated_at, end_step, tags` (`;`-separated), then `config.<key>` for
//!   every config entry of any run (nested objects flattened with dots,
//!   other values as JSON), then `<key>` for the last value of every scalar
//!   series of any run; a cell a run has no value for is empty;
//! - histograms in long form, one bin per row: `key,step,lower,upper,count`,
//!   and for a step with NaN or ±Inf values one more row with empty bounds
//!   holding their count;
//! - a weight matrix (`tensor` record), one value per row:
//!   `key,step,row,col,value`, and a feature map (`image` record with
//!   values): `key,step,channel,row,col,value`.

use std::collections::{BTreeMap, BTreeSet};

use crate::compare::config;
use crate::model::{Point, Run, SeriesInfo};
use crate::record::{HistogramRecord, ImageRecord, Record, TensorRecord, Value};

/// The header of the long form.
pub const SCALARS_HEADER: &str = "key,step,time,value\n";

fn value_text(v: Value) -> String {
    if v.0.is_finite() {
        number(v.0)
    } else {
        crate::record::nonfinite_name(v.0).to_string()
    }
}

/// The shortest text that reads back as exactly `v` (JSON's form: `0.1`,
/// `1.0`, `1e-300`).
fn number(v: f64) -> String {
    serde_json::Number::from_f64(v).map_or_else(|| v.to_string(), |n| n.to_string())
}

fn writer() -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new())
}

fn finish(w: csv::Writer<Vec<u8>>) -> String {
    let bytes = w.into_inner().expect("writing to memory cannot fail");
    String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8")
}

/// The scalar rows of one export page (other records are not scalars and are
/// left out), without the header.
pub fn scalar_rows(page: &[Record]) -> String {
    let mut w = writer();
    for r in page {
        if let Record::Scalar(s) = r {
            let time = s.time.map(number).unwrap_or_default();
            w.write_record([&s.key, &s.step.to_string(), &time, &value_text(s.value)])
                .expect("writing to memory cannot fail");
        }
    }
    finish(w)
}

/// The long-form rows of one series' points (a chart's download), without
/// the header: the same columns and value texts as [`scalar_rows`].
pub fn point_rows(key: &str, points: &[Point]) -> String {
    let mut w = writer();
    for p in points {
        let time = p.time.map(number).unwrap_or_default();
        w.write_record([key, &p.step.to_string(), &time, &value_text(Value(p.value))])
            .expect("writing to memory cannot fail");
    }
    finish(w)
}

/// The header of the long form of several runs' points (the compare
/// page's download): the run's id and name, then the long form's columns.
pub const RUN_SCALARS_HEADER: &str = "run_id,run_name,key,step,time,value\n";

/// [`point_rows`] of one run's series, with the run's id and name first.
pub fn run_point_rows(run_id: &str, run_name: &str, key: &str, points: &[Point]) -> String {
    let mut w = writer();
    for p in points {
        let time = p.time.map(number).unwrap_or_default();
        w.write_record([
            run_id,
            run_name,
            key,
            &p.step.to_string(),
            &time,
            &value_text(Value(p.value)),
        ])
        .expect("writing to memory cannot fail");
    }
    finish(w)
}

/// The header of the histograms' long form.
pub const HISTOGRAM_HEADER: &str = "key,step,lower,upper,count\n";

/// The long-form rows of `hists` (a distribution chart's download), without
/// the header.
pub fn histogram_rows(hists: &[HistogramRecord]) -> String {
    let mut w = writer();
    for h in hists {
        let step = h.step.to_string();
        for (i, count) in h.counts.iter().enumerate() {
            let (lo, hi) = (h.edges.get(i), h.edges.get(i + 1));
            let bound = |e: Option<&f64>| e.map(|v| value_text(Value(*v))).unwrap_or_default();
            w.write_record([&h.key, &step, &bound(lo), &bound(hi), &count.to_string()])
                .expect("writing to memory cannot fail");
        }
        if h.nonfinite > 0 {
            w.write_record([&h.key, &step, "", "", &h.nonfinite.to_string()])
                .expect("writing to memory cannot fail");
        }
    }
    finish(w)
}

/// The header of a weight matrix's long form (a `tensor` record drawn as
/// rows × columns, see [`crate::charts::raster::as_matrix`]).
pub const TENSOR_HEADER: &str = "key,step,row,col,value\n";

/// The header of a feature map's long form.
pub const FEATURE_MAP_HEADER: &str = "key,step,channel,row,col,value\n";

/// The rows of a tensor record's values as logged (a sample stays the
/// sample), one value a row, without the header.
pub fn tensor_rows(t: &TensorRecord) -> String {
    let (_, cols) = crate::charts::raster::as_matrix(&t.shape);
    cell_rows(&t.key, t.step, &t.values, None, cols)
}

/// The rows of a feature map's values (`[channels, height, width]`), one
/// value a row, without the header; `None` for a PNG image, or values that
/// do not fill the shape.
pub fn feature_map_rows(img: &ImageRecord) -> Option<String> {
    let values = img.values.as_deref()?;
    let (_, h, w) = crate::charts::feature_map::dims(img.shape.as_deref()?, values.len())?;
    Some(cell_rows(&img.key, img.step, values, Some(h * w), w))
}

/// `key,step,[channel,]row,col,value` of row-major `values`, in planes of
/// `plane` values when there are channels.
fn cell_rows(key: &str, step: u64, values: &[Value], plane: Option<usize>, cols: usize) -> String {
    let mut w = writer();
    let step = step.to_string();
    let cols = cols.max(1);
    for (i, v) in values.iter().enumerate() {
        let (channel, at) = match plane {
            Some(n) => (Some((i / n).to_string()), i % n),
            None => (None, i),
        };
        let (row, col) = ((at / cols).to_string(), (at % cols).to_string());
        let value = value_text(*v);
        let fields = [key, step.as_str()]
            .into_iter()
            .chain(channel.as_deref())
            .chain([row.as_str(), col.as_str(), value.as_str()]);
        w.write_record(fields)
            .expect("writing to memory cannot fail");
    }
    finish(w)
}
/// The runs table: each run with its series (their last values).
pub fn runs_table(runs: &[(Run, Vec<SeriesInfo>)]) -> String {
    let configs: Vec<BTreeMap<String, String>> = runs
        .iter()
        .map(|(run, _)| {
            let mut flat = BTreeMap::new();
            if let Some(config) = &run.config {
                let config = config.parse();
                for (key, v) in config::leaves(&config) {
                    flat.insert(key, config::text(v));
                }
            }
            flat
        })
        .collect();
    let config_keys: BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    let metric_keys: BTreeSet<&String> = runs
        .iter()
        .flat_map(|(_, series)| series.iter().map(|s| &s.key))
        .collect();
    let mut w = writer();
    let mut header: Vec<String> = [
        "id",
        "name",
        "status",
        "created_at",
        "updated_at",
        "end_step",
        "tags",
    ]
    .map(String::from)
    .to_vec();
    header.extend(config_keys.iter().map(|k| format!("config.{k}")));
    header.extend(metric_keys.iter().map(|k| k.to_string()));
    w.write_record(&header)
        .expect("writing to memory cannot fail");
    for ((run, series), config) in runs.iter().zip(&configs) {
        let last: BTreeMap<&String, Value> = series
            .iter()
            .filter_map(|s| s.last_value.map(|v| (&s.key, v)))
            .collect();
        let mut row = vec![
            run.id.to_string(),
            run.name.clone(),
            run.status.to_string(),
            number(run.created_at),
            number(run.updated_at),
            run.end_step.map(|s| s.to_string()).unwrap_or_default(),
            run.tags.join(";"),
        ];
        row.extend(
            config_keys
                .iter()
                .map(|k| config.get(*k).cloned().unwrap_or_default()),
        );
        row.extend(
            metric_keys
                .iter()
                .map(|k| last.get(*k).map(|v| value_text(*v)).unwrap_or_default()),
        );
        w.write_record(&row).expect("writing to memory cannot fail");
    }
    finish(w)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Config, RunStatus};
    use crate::record::ScalarRecord;

    fn scalar(key: &str, step: u64, v: f64, time: Option<f64>) -> Record {
        Record::Scalar(ScalarRecord {
            step,
            key: key.into(),
            value: Value(v),
            time,
        })
    }

    #[test]
    fn scalars_are_rows_with_exact_values_and_quoted_keys() {
        let page = vec![
            scalar("train/loss", 0, 0.1, Some(1700000000.25)),
            scalar("a,\"b\"", 1, f64::NAN, None),
            scalar("x", 2, f64::NEG_INFINITY, None),
            scalar("x", 3, 1e-300, None),
        ];
        assert_eq!(
            scalar_rows(&page),
            "train/loss,0,1700000000.25,0.1\n\"a,\"\"b\"\"\",1,,NaN\nx,2,,-Infinity\nx,3,,1e-300\n"
        );
        let back: f64 = "1e-300".parse().unwrap();
        assert_eq!(back, 1e-300);
        let points = [
            Point {
                step: 0,
                value: 0.1,
                time: Some(1700000000.25),
            },
            Point {
                step: 1,
                value: f64::INFINITY,
                time: None,
            },
        ];
        assert_eq!(
            point_rows("a,\"b\"", &points),
            "\"a,\"\"b\"\"\",0,1700000000.25,0.1\n\"a,\"\"b\"\"\",1,,Infinity\n"
        );
    }

    fn run(name: &str, config: &str, tags: &[&str]) -> Run {
        Run {
            id: uuid::Uuid::nil(),
            project: "p".into(),
            name: name.into(),
            status: RunStatus::Finished,
            config: Some(Config::from_text(config.into()).unwrap()),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            run_key: None,
            created_at: 1.5,
            updated_at: 2.5,
            heartbeat_at: None,
            end_step: Some(99),
            data_version: 1,
        }
    }

    fn series(key: &str, last: f64) -> SeriesInfo {
        SeriesInfo {
            key: key.into(),
            count: 1,
            first_step: Some(0),
            last_step: Some(0),
            last_value: Some(Value(last)),
        }
    }

    #[test]
    fn the_runs_table_has_the_union_of_configs_and_metrics() {
        let runs = vec![
            (
                run("a", r#"{"lr":0.1,"opt":{"name":"sgd"}}"#, &["x", "y"]),
                vec![series("val/loss", 0.5)],
            ),
            (
                run("b", r#"{"layers":[64,64]}"#, &[]),
                vec![series("val/acc", f64::NAN)],
            ),
        ];
        let text = runs_table(&runs);
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "id,name,status,created_at,updated_at,end_step,tags,config.layers,config.lr,config.opt.name,val/acc,val/loss"
        );
        let nil = uuid::Uuid::nil();
        assert_eq!(
            lines.next().unwrap(),
            format!("{nil},a,finished,1.5,2.5,99,x;y,,0.1,sgd,,0.5")
        );
        assert_eq!(
            lines.next().unwrap(),
            format!("{nil},b,finished,1.5,2.5,99,,\"[64,64]\",,,NaN,")
        );
        assert!(lines.next().is_none());
    }

    #[test]
    fn tensors_and_feature_maps_are_one_value_a_row() {
        let t = TensorRecord {
            step: 7,
            key: "weights/fc1".into(),
            shape: vec![2, 1, 2],
            values: [0.5, f64::NAN, f64::INFINITY, -2.0].map(Value).to_vec(),
            sample: None,
            time: None,
        };
        assert_eq!(
            format!("{TENSOR_HEADER}{}", tensor_rows(&t)),
            "key,step,row,col,value\nweights/fc1,7,0,0,0.5\nweights/fc1,7,0,1,NaN\n\
             weights/fc1,7,1,0,Infinity\nweights/fc1,7,1,1,-2.0\n"
        );
        let img = ImageRecord {
            step: 3,
            key: "f,1".into(),
            png: None,
            shape: Some(vec![2, 1, 2]),
            values: Some([1.0, 2.0, f64::NEG_INFINITY, 0.25].map(Value).to_vec()),
            time: None,
        };
        assert_eq!(
            feature_map_rows(&img).unwrap(),
            "\"f,1\",3,0,0,0,1.0\n\"f,1\",3,0,0,1,2.0\n\"f,1\",3,1,0,0,-Infinity\n\"f,1\",3,1,0,1,0.25\n"
        );
        let png = ImageRecord {
            png: Some("iVBOR".into()),
            shape: None,
            values: None,
            ..img
        };
        assert_eq!(feature_map_rows(&png), None);
    }

    #[test]
    fn histograms_are_one_bin_a_row_and_their_nonfinite_count_a_row_without_bounds() {
        let h = |step, nonfinite| HistogramRecord {
            step,
            key: "w,1".into(),
            edges: vec![-1.0, 0.0, 0.5],
            counts: vec![3, 4],
            nonfinite,
        };
        assert_eq!(
            format!("{HISTOGRAM_HEADER}{}", histogram_rows(&[h(0, 0), h(10, 2)])),
            "key,step,lower,upper,count\n\"w,1\",0,-1.0,0.0,3\n\"w,1\",0,0.0,0.5,4\n\
             \"w,1\",10,-1.0,0.0,3\n\"w,1\",10,0.0,0.5,4\n\"w,1\",10,,,2\n"
        );
    }
}
