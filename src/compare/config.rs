//! Configs as flat parameters, and the diff of several runs' configs.

use std::collections::HashMap;

use serde_json::Value;

/// `config` flattened, in the config's own order: nested objects become
/// `a.b` parameters; every other value (numbers, strings, booleans, lists)
/// is a leaf. A `null` leaf is left out (it says nothing was set); a config
/// that is not an object is one parameter, `config`.
pub fn flatten(config: &Value) -> Vec<(String, Value)> {
    leaves(config)
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(key, v)| {
            let key = if key.is_empty() { "config".into() } else { key };
            (key, v.clone())
        })
        .collect()
}

/// Every leaf of `config` (`null`s included) under its path, in the
/// config's own order: `a.b` for a value in a nested object, `""` for a
/// config that is not an object.
pub fn leaves(config: &Value) -> Vec<(String, &Value)> {
    fn walk<'a>(prefix: &str, v: &'a Value, out: &mut Vec<(String, &'a Value)>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            leaf => out.push((prefix.to_string(), leaf)),
        }
    }
    let mut out = Vec::new();
    walk("", config, &mut out);
    out
}

/// A leaf as shown: strings bare, everything else as JSON.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether two leaves are the same setting: numbers by value (`1` and
/// `1.0`, `0.001` and `1e-3` are the same learning rate), the rest exactly.
pub fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

/// One parameter across the compared runs.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffRow {
    pub key: String,
    /// Per run, in the order given: its value's text, `None` when the run's
    /// config does not set it.
    pub values: Vec<Option<String>>,
    /// Whether the runs disagree (a parameter set in one run and missing in
    /// another differs).
    pub differs: bool,
}

/// Every parameter of any of `configs` (flattened, see [`flatten`]), in
/// first-seen order, with whether the runs disagree on it.
pub fn diff(configs: &[Vec<(String, Value)>]) -> Vec<DiffRow> {
    let mut order: Vec<&str> = Vec::new();
    let mut seen: HashMap<&str, ()> = HashMap::new();
    let maps: Vec<HashMap<&str, &Value>> = configs
        .iter()
        .map(|c| c.iter().map(|(k, v)| (k.as_str(), v)).collect())
        .collect();
    for c in configs {
        for (k, _) in c {
            if seen.insert(k.as_str(), ()).is_none() {
                order.push(k);
            }
        }
    }
    order
        .into_iter()
        .map(|key| {
            let values: Vec<Option<&Value>> = maps.iter().map(|m| m.get(key).copied()).collect();
            let differs = values.windows(2).any(|w| match (w[0], w[1]) {
                (Some(a), Some(b)) => !same(a, b),
                (None, None) => false,
                _ => true,
            });
            DiffRow {
                key: key.to_string(),
                values: values.iter().map(|v| v.map(text)).collect(),
                differs,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_configs_flatten_with_dots_in_order() {
        let flat = flatten(&json!({
            "lr": 0.001,
            "optimizer": {"name": "adam", "betas": [0.9, 0.999]},
            "note": null,
            "aug": true
        }));
        let keys: Vec<&str> = flat.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["lr", "optimizer.name", "optimizer.betas", "aug"]);
        assert_eq!(text(&flat[1].1), "adam");
        assert_eq!(text(&flat[2].1), "[0.9,0.999]");
        assert_eq!(flatten(&json!(3)), [("config".to_string(), json!(3))]);
        assert!(flatten(&json!({})).is_empty());
    }

    #[test]
    fn the_diff_marks_only_what_differs() {
        let a = flatten(&json!({"lr": 0.001, "batch": 32, "opt": "adam", "epochs": 10}));
        let b = flatten(&json!({"lr": 1e-3, "batch": 64, "opt": "adam", "seed": 1}));
        let c = flatten(&json!({"lr": 0.001, "batch": 32.0, "opt": "adam", "epochs": 10}));
        let rows = diff(&[a, b, c]);
        let differing: Vec<&str> = rows
            .iter()
            .filter(|r| r.differs)
            .map(|r| r.key.as_str())
            .collect();
        assert_eq!(differing, ["batch", "epochs", "seed"]);
        let same: Vec<&str> = rows
            .iter()
            .filter(|r| !r.differs)
            .map(|r| r.key.as_str())
            .collect();
        assert_eq!(same, ["lr", "opt"], "0.001 and 1e-3 are one learning rate");
        let epochs = rows.iter().find(|r| r.key == "epochs").unwrap();
        assert_eq!(epochs.values, [Some("10".into()), None, Some("10".into())]);
        // One run, or runs with the same config: nothing differs.
        assert!(
            diff(&[flatten(&json!({"x": 1}))])
                .iter()
                .all(|r| !r.differs)
        );
        assert!(diff(&[vec![], vec![]]).is_empty());
    }
}
