//! MLflow's limits, with its messages: at most 1000 metrics, 100 params,
//! 100 tags and 1000 entities per batch; keys of at most 250 characters;
//! param values of 6000 and tag values of 8000; steps non-negative (a
//! trainlens rule). All refused with 400 `INVALID_PARAMETER_VALUE`.

use super::error::MlflowError;
use super::wire::{KeyValue, MetricIn};
use crate::store::mlflow::{MlMetric, NewMetric};

pub const MAX_METRICS_PER_BATCH: usize = 1000;
pub const MAX_PARAMS_TAGS_PER_BATCH: usize = 100;
pub const MAX_ENTITIES_PER_BATCH: usize = 1000;
pub const MAX_ENTITY_KEY_LENGTH: usize = 250;
pub const MAX_PARAM_VAL_LENGTH: usize = 6000;
pub const MAX_TAG_VAL_LENGTH: usize = 8000;
pub const MAX_EXPERIMENT_NAME_LENGTH: usize = 500;
pub const MAX_EXPERIMENT_TAG_VAL_LENGTH: usize = 20_000;

fn limit(entity: &str, limit: usize, length: usize) -> Result<(), MlflowError> {
    if length > limit {
        return Err(MlflowError::invalid(format!(
            "A batch logging request can contain at most {limit} {entity}. Got {length} {entity}. \
             Please split up {entity} across multiple requests and try again."
        )));
    }
    Ok(())
}

pub fn batch_limits(metrics: usize, params: usize, tags: usize) -> Result<(), MlflowError> {
    limit("metrics", MAX_METRICS_PER_BATCH, metrics)?;
    limit("params", MAX_PARAMS_TAGS_PER_BATCH, params)?;
    limit("tags", MAX_PARAMS_TAGS_PER_BATCH, tags)?;
    limit(
        "metrics, params, and tags",
        MAX_ENTITIES_PER_BATCH,
        metrics + params + tags,
    )
}

fn path(prefix: &str, i: usize, field: &str) -> String {
    if prefix.is_empty() {
        field.to_string()
    } else {
        format!("{prefix}[{i}].{field}")
    }
}

fn missing(path: &str) -> MlflowError {
    MlflowError::invalid(format!(
        "Missing value for required parameter '{path}'. See the API docs for more information about request parameters."
    ))
}

fn length(entity: &str, max: usize, value: &str) -> Result<(), MlflowError> {
    if value.chars().count() > max {
        return Err(MlflowError::invalid(format!(
            "'{entity}' exceeds the maximum length of {max} characters"
        )));
    }
    Ok(())
}

fn key(entity: &str, k: &Option<String>, path: &str) -> Result<String, MlflowError> {
    let k = k
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or_else(|| missing(path))?;
    length(&format!("{entity} key"), MAX_ENTITY_KEY_LENGTH, k)?;
    Ok(k.to_string())
}

/// Metrics as the store takes them; a missing timestamp is `now_ms`, a
/// missing step 0.
pub fn metrics(ms: &[MetricIn], prefix: &str, now_ms: i64) -> Result<Vec<NewMetric>, MlflowError> {
    ms.iter()
        .enumerate()
        .map(|(i, m)| {
            let key = key("Metric", &m.key, &path(prefix, i, "key"))?;
            let value = m.value.ok_or_else(|| missing(&path(prefix, i, "value")))?;
            let step = m.step.unwrap_or(0);
            if step < 0 {
                return Err(MlflowError::invalid(format!(
                    "Invalid value {step} for parameter '{}': trainlens stores non-negative steps",
                    path(prefix, i, "step")
                )));
            }
            Ok(NewMetric {
                key,
                metric: MlMetric {
                    value,
                    timestamp: m.timestamp.unwrap_or(now_ms),
                    step,
                },
            })
        })
        .collect()
}

pub fn params(ps: &[KeyValue], prefix: &str) -> Result<Vec<(String, String)>, MlflowError> {
    let out: Vec<(String, String)> = ps
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let k = key("Param", &p.key, &path(prefix, i, "key"))?;
            let v = p
                .value
                .clone()
                .ok_or_else(|| missing(&path(prefix, i, "value")))?;
            length("Param value", MAX_PARAM_VAL_LENGTH, &v)?;
            Ok((k, v))
        })
        .collect::<Result<_, MlflowError>>()?;
    let mut seen = std::collections::BTreeSet::new();
    let dupes: Vec<&str> = out
        .iter()
        .filter(|(k, _)| !seen.insert(k.as_str()))
        .map(|(k, _)| k.as_str())
        .collect();
    if !dupes.is_empty() {
        return Err(MlflowError::invalid(format!(
            "Duplicate parameter keys have been submitted: {dupes:?}. Please ensure the request \
             contains only one param value per param key."
        )));
    }
    Ok(out)
}

pub fn tags(ts: &[KeyValue], prefix: &str) -> Result<Vec<(String, String)>, MlflowError> {
    tags_up_to(ts, prefix, MAX_TAG_VAL_LENGTH)
}

/// Experiment tags: values up to 20 000 characters, as MLflow.
pub fn experiment_tags(
    ts: &[KeyValue],
    prefix: &str,
) -> Result<Vec<(String, String)>, MlflowError> {
    if ts.len() > MAX_PARAMS_TAGS_PER_BATCH {
        limit("tags", MAX_PARAMS_TAGS_PER_BATCH, ts.len())?;
    }
    tags_up_to(ts, prefix, MAX_EXPERIMENT_TAG_VAL_LENGTH)
}

fn tags_up_to(
    ts: &[KeyValue],
    prefix: &str,
    max_value: usize,
) -> Result<Vec<(String, String)>, MlflowError> {
    ts.iter()
        .enumerate()
        .map(|(i, t)| {
            let k = key("Tag", &t.key, &path(prefix, i, "key"))?;
            let v = t.value.clone().unwrap_or_default();
            length("Tag value", max_value, &v)?;
            Ok((k, v))
        })
        .collect()
}

pub fn experiment_name(name: Option<String>) -> Result<String, MlflowError> {
    let name = name
        .filter(|n| !n.trim().is_empty())
        .ok_or_else(|| missing("name"))?;
    length("Experiment name", MAX_EXPERIMENT_NAME_LENGTH, &name)?;
    Ok(name)
}

/// `max_results` within 1..=`max`, `default` when absent.
pub fn max_results(n: Option<i64>, default: i64, max: i64) -> Result<usize, MlflowError> {
    match n {
        None => Ok(default as usize),
        Some(n) if n >= 1 && n <= max => Ok(n as usize),
        Some(n) => Err(MlflowError::invalid(format!(
            "Invalid value {n} for parameter 'max_results' supplied. It must be at most {max} and at least 1"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(k: &str, v: &str) -> KeyValue {
        KeyValue {
            key: Some(k.into()),
            value: Some(v.into()),
        }
    }

    #[test]
    fn batch_limits_speak_mlflow() {
        assert!(batch_limits(1000, 100, 0).is_err(), "1100 entities");
        assert!(batch_limits(900, 100, 0).is_ok());
        let e = batch_limits(1001, 0, 0).unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        assert_eq!(e.code, "INVALID_PARAMETER_VALUE");
        assert!(
            e.message.starts_with(
                "A batch logging request can contain at most 1000 metrics. Got 1001 metrics."
            ),
            "{}",
            e.message
        );
        assert!(
            batch_limits(0, 101, 0)
                .unwrap_err()
                .message
                .contains("100 params")
        );
        assert!(
            batch_limits(0, 0, 101)
                .unwrap_err()
                .message
                .contains("100 tags")
        );
    }

    #[test]
    fn keys_values_and_steps() {
        let long = "k".repeat(251);
        let e = params(&[kv(&long, "1")], "params").unwrap_err();
        assert_eq!(
            e.message,
            "'Param key' exceeds the maximum length of 250 characters"
        );
        assert!(params(&[kv(&"k".repeat(250), "1")], "").is_ok());
        assert!(tags(&[kv("t", &"v".repeat(8001))], "").is_err());
        assert!(experiment_tags(&[kv("t", &"v".repeat(20_000))], "").is_ok());
        let e = experiment_tags(&[kv("t", &"v".repeat(20_001))], "tags").unwrap_err();
        assert_eq!(
            e.message,
            "'Tag value' exceeds the maximum length of 20000 characters"
        );
        let e = experiment_tags(
            &[KeyValue {
                key: None,
                value: None,
            }],
            "tags",
        )
        .unwrap_err();
        assert!(e.message.contains("'tags[0].key'"), "{}", e.message);
        let e = params(&[kv("a", "1"), kv("a", "2")], "").unwrap_err();
        assert!(
            e.message.contains("Duplicate parameter keys"),
            "{}",
            e.message
        );
        let m = MetricIn {
            key: Some("loss".into()),
            value: Some(f64::NAN),
            timestamp: None,
            step: None,
        };
        let out = metrics(std::slice::from_ref(&m), "metrics", 42).unwrap();
        assert_eq!((out[0].metric.timestamp, out[0].metric.step), (42, 0));
        let e = metrics(
            &[MetricIn {
                step: Some(-1),
                ..m.clone()
            }],
            "metrics",
            0,
        )
        .unwrap_err();
        assert!(e.message.contains("metrics[0].step"), "{}", e.message);
        let e = metrics(&[MetricIn { value: None, ..m }], "", 0).unwrap_err();
        assert!(e.message.contains("'value'"), "{}", e.message);
    }
}
