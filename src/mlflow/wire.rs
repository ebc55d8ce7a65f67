//! MLflow's JSON: requests (a POST body, or a GET's query parameters, where
//! every value is a string and a repeated name is a list), proto3 numbers
//! (int64 as a number or a string; doubles as numbers or `"NaN"`,
//! `"Infinity"`, `"-Infinity"`), and the entities of the answers.

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::error::MlflowError;
use super::filter::{Entity, Fields};
use crate::store::mlflow::{Experiment, MlData, MlMetric, MlRun};

/// The request's fields: the JSON body when there is one, over the query
/// parameters.
pub fn request<T: DeserializeOwned>(query: Option<&str>, body: &[u8]) -> Result<T, MlflowError> {
    let mut fields = Map::new();
    if let Some(q) = query {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            let v = Value::String(v.into_owned());
            match fields.get_mut(k.as_ref()) {
                Some(Value::Array(list)) => list.push(v),
                Some(old) => *old = Value::Array(vec![old.take(), v]),
                None => {
                    fields.insert(k.into_owned(), v);
                }
            }
        }
    }
    if !body.iter().all(u8::is_ascii_whitespace) {
        let parsed: Value = serde_json::from_slice(body).map_err(|e| {
            MlflowError::bad_request(format!("Malformed request body, not JSON: {e}"))
        })?;
        let Value::Object(obj) = parsed else {
            return Err(MlflowError::bad_request(
                "the request body must be a JSON object",
            ));
        };
        fields.extend(obj);
    }
    serde_path_to_error::deserialize(Value::Object(fields)).map_err(|e| {
        MlflowError::invalid(format!(
            "Invalid value for parameter '{}': {}",
            e.path(),
            e.inner()
        ))
    })
}

/// An int64 as a JSON number or a string.
pub fn int<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    use serde::de::Error;
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => Some(
            n.as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or_else(|| D::Error::custom(format!("{n} is not an integer")))?,
        ),
        Some(Value::String(s)) => Some(
            s.trim()
                .parse()
                .map_err(|_| D::Error::custom(format!("{s:?} is not an integer")))?,
        ),
        Some(other) => return Err(D::Error::custom(format!("{other} is not an integer"))),
    })
}

/// A double as a JSON number, a numeric string, or `"NaN"`,
/// `"Infinity"`, `"-Infinity"`.
pub fn double<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    use serde::de::Error;
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => Some(
            parse_double(&s).ok_or_else(|| D::Error::custom(format!("{s:?} is not a number")))?,
        ),
        Some(other) => return Err(D::Error::custom(format!("{other} is not a number"))),
    })
}

pub fn parse_double(s: &str) -> Option<f64> {
    // Rust's parse also takes "inf", "nan", "+Infinity" in any case.
    crate::record::parse_nonfinite(s).or_else(|| s.trim().parse().ok())
}

/// A list that may come as one value (a GET with one `run_ids=`).
pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    use serde::de::Error;
    let v = Option::<Value>::deserialize(d)?;
    let items = match v {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a,
        Some(one) => vec![one],
    };
    items
        .into_iter()
        .map(|i| serde_json::from_value(i).map_err(D::Error::custom))
        .collect()
}

/// A string field that a GET sends as text and a POST maybe as a number
/// (`experiment_id: 0`).
pub fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    })
}

#[derive(Debug, Deserialize, Serialize, Clone, PartialEq)]
pub struct KeyValue {
    pub key: Option<String>,
    #[serde(default, deserialize_with = "text")]
    pub value: Option<String>,
}

#[derive(Debug, Deserialize, Clone, PartialEq)]
pub struct MetricIn {
    pub key: Option<String>,
    #[serde(default, deserialize_with = "double")]
    pub value: Option<f64>,
    #[serde(default, deserialize_with = "int")]
    pub timestamp: Option<i64>,
    #[serde(default, deserialize_with = "int")]
    pub step: Option<i64>,
}

/// A double as MLflow answers it.
pub fn double_json(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!(crate::record::nonfinite_name(v))
    }
}

pub fn metric_json(key: &str, m: &MlMetric) -> Value {
    json!({ "key": key, "value": double_json(m.value), "timestamp": m.timestamp, "step": m.step })
}

/// `[{"key": k, "value": v}, …]`.
pub fn key_values_json(kvs: &std::collections::BTreeMap<String, String>) -> Value {
    kvs.iter()
        .map(|(k, v)| json!({ "key": k, "value": v }))
        .collect()
}

pub fn experiment_json(e: &Experiment, tags: &std::collections::BTreeMap<String, String>) -> Value {
    json!({
        "experiment_id": e.id.to_string(),
        "name": e.name,
        "artifact_location": format!("mlflow-artifacts:/{}", e.id),
        "lifecycle_stage": "active",
        "creation_time": e.created_ms,
        "last_update_time": e.created_ms,
        "tags": key_values_json(tags),
    })
}

pub fn run_info_json(r: &MlRun) -> Value {
    let mut info = json!({
        "run_id": r.mlflow_id,
        "run_uuid": r.mlflow_id,
        "run_name": r.name,
        "experiment_id": r.experiment_id.to_string(),
        "user_id": r.user_id,
        "status": r.mlflow_status(),
        "start_time": r.start_time,
        "artifact_uri": format!("mlflow-artifacts:/{}/{}/artifacts", r.experiment_id, r.mlflow_id),
        "lifecycle_stage": r.lifecycle_stage,
    });
    if let Some(end) = r.end_time {
        info["end_time"] = json!(end);
    }
    info
}

pub fn run_json(r: &MlRun, d: &MlData) -> Value {
    let kv = |m: &std::collections::BTreeMap<String, String>| -> Vec<Value> {
        m.iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect()
    };
    let metrics: Vec<Value> = d.metrics.iter().map(|(k, m)| metric_json(k, m)).collect();
    json!({
        "info": run_info_json(r),
        "data": { "metrics": metrics, "params": kv(&d.params), "tags": kv(&d.tags) },
        "inputs": {},
    })
}

/// A run with its data, for the search filter and ordering.
pub struct Searched<'a>(pub &'a MlRun, pub &'a MlData);

impl Fields for Searched<'_> {
    fn text(&self, entity: Entity, key: &str) -> Option<String> {
        let (r, d) = (self.0, self.1);
        match entity {
            Entity::Param => d.params.get(key).cloned(),
            Entity::Tag => d.tags.get(key).cloned(),
            Entity::Metric => None,
            Entity::Attribute => Some(match key {
                "status" => r.mlflow_status().to_string(),
                "run_name" | "name" => r.name.clone(),
                "run_id" | "run_uuid" => r.mlflow_id.clone(),
                "user_id" => r.user_id.clone(),
                "lifecycle_stage" => r.lifecycle_stage.clone(),
                "experiment_id" => r.experiment_id.to_string(),
                "artifact_uri" => format!(
                    "mlflow-artifacts:/{}/{}/artifacts",
                    r.experiment_id, r.mlflow_id
                ),
                _ => return None,
            }),
        }
    }

    fn number(&self, entity: Entity, key: &str) -> Option<f64> {
        let (r, d) = (self.0, self.1);
        match (entity, key) {
            (Entity::Metric, k) => d.metrics.get(k).map(|m| m.value),
            (Entity::Attribute, "start_time" | "created") => Some(r.start_time as f64),
            (Entity::Attribute, "end_time") => r.end_time.map(|t| t as f64),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Q {
        #[serde(default, deserialize_with = "list")]
        run_ids: Vec<String>,
        #[serde(default, deserialize_with = "int")]
        max_results: Option<i64>,
        #[serde(default, deserialize_with = "double")]
        value: Option<f64>,
    }

    #[test]
    fn get_queries_and_post_bodies_read_alike() {
        let q: Q = request(Some("run_ids=a&run_ids=b&max_results=25000&value=NaN"), b"").unwrap();
        assert_eq!(q.run_ids, ["a", "b"]);
        assert_eq!(q.max_results, Some(25000));
        assert!(q.value.unwrap().is_nan());
        let q: Q = request(
            None,
            br#"{"run_ids":"a","max_results":3,"value":"-Infinity"}"#,
        )
        .unwrap();
        assert_eq!(q.run_ids, ["a"]);
        assert_eq!(q.value, Some(f64::NEG_INFINITY));
        let e = request::<Q>(None, b"{nope").unwrap_err();
        assert_eq!(e.status.as_u16(), 400);
        let e = request::<Q>(None, br#"{"max_results":"many"}"#).unwrap_err();
        assert_eq!(e.code, "INVALID_PARAMETER_VALUE");
        assert!(e.message.contains("max_results"), "{}", e.message);
    }

    #[test]
    fn doubles_answer_as_mlflow_sends_them() {
        assert_eq!(double_json(f64::NAN), json!("NaN"));
        assert_eq!(double_json(f64::INFINITY), json!("Infinity"));
        assert_eq!(double_json(f64::NEG_INFINITY), json!("-Infinity"));
        assert_eq!(double_json(0.5), json!(0.5));
    }
}
