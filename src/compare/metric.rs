//! The metric a project's runs are ranked by on the hyperparameter view: a
//! series key and how its points make one number per run — its lowest, its
//! highest or its last value ("best val loss", "final accuracy").

use crate::diagnostics::names::{Role, classify};

/// How a series becomes one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agg {
    Min,
    Max,
    Last,
}

impl Agg {
    pub fn as_str(self) -> &'static str {
        match self {
            Agg::Min => "min",
            Agg::Max => "max",
            Agg::Last => "last",
        }
    }
}

/// Words of keys where lower is better, beside the loss roles of
/// `diagnostics::names` (anything else — accuracy, F1, AUC, BLEU — is
/// better higher).
const LOWER_WORDS: [&str; 9] = [
    "loss", "err", "perplex", "ppl", "mse", "mae", "wer", "cer", "nll",
];

/// Whether lower values of `key` are better (losses, errors, perplexity).
pub fn lower_is_better_key(key: &str) -> bool {
    match classify(key).map(|m| m.role) {
        Some(Role::TrainLoss | Role::ValLoss) => true,
        Some(Role::TrainAcc | Role::ValAcc) => false,
        _ => {
            let k = key.to_ascii_lowercase();
            LOWER_WORDS.iter().any(|w| k.contains(w))
        }
    }
}

/// A series key with its aggregation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub key: String,
    pub agg: Agg,
}

impl Metric {
    /// From its query form, `min:val/loss` (see [`Metric::param`]).
    pub fn parse(s: &str) -> Result<Metric, String> {
        let (agg, key) = s
            .split_once(':')
            .ok_or_else(|| format!("metric {s:?} is not <min|max|last>:<key>"))?;
        let agg = match agg {
            "min" => Agg::Min,
            "max" => Agg::Max,
            "last" => Agg::Last,
            other => {
                return Err(format!(
                    "metric aggregation {other:?} is not min, max or last"
                ));
            }
        };
        if key.is_empty() {
            return Err("metric has no key after the colon".into());
        }
        Ok(Metric {
            key: key.to_string(),
            agg,
        })
    }

    /// The query form: `min:val/loss`.
    pub fn param(&self) -> String {
        format!("{}:{}", self.agg.as_str(), self.key)
    }

    /// As a person reads it: `lowest val/loss`, `last val/acc`.
    pub fn label(&self) -> String {
        let how = match self.agg {
            Agg::Min => "lowest",
            Agg::Max => "highest",
            Agg::Last => "last",
        };
        format!("{how} {}", self.key)
    }

    /// Which end is good: the lowest of a series is asked for because low
    /// is good, the highest because high is; the last by the key's kind.
    pub fn lower_is_better(&self) -> bool {
        match self.agg {
            Agg::Min => true,
            Agg::Max => false,
            Agg::Last => lower_is_better_key(&self.key),
        }
    }

    /// A run's value from its series' last value and finite extremes;
    /// `None` unless finite (a run whose last loss is NaN has no final
    /// loss to rank; its lowest loss before it diverged still counts).
    pub fn value(&self, last: Option<f64>, min: Option<f64>, max: Option<f64>) -> Option<f64> {
        match self.agg {
            Agg::Min => min,
            Agg::Max => max,
            Agg::Last => last,
        }
        .filter(|v| v.is_finite())
    }
}

/// Whether `key` can rank runs: a run-level series, not a layer's.
fn rankable(key: &str) -> bool {
    classify(key).is_none_or(|m| m.layer.is_none())
}

/// The metrics `keys` offer, in key order: each key's best end (lowest or
/// highest), then its last value.
pub fn choices<'a>(keys: impl IntoIterator<Item = &'a str>) -> Vec<Metric> {
    let mut out = Vec::new();
    for key in keys.into_iter().filter(|k| rankable(k)) {
        let best = if lower_is_better_key(key) {
            Agg::Min
        } else {
            Agg::Max
        };
        for agg in [best, Agg::Last] {
            out.push(Metric {
                key: key.to_string(),
                agg,
            });
        }
    }
    out
}

/// The metric shown first: the best validation loss, else the final
/// validation accuracy, else the best training loss, else the final
/// training accuracy, else the first choice.
pub fn default_metric<'a>(keys: impl IntoIterator<Item = &'a str> + Clone) -> Option<Metric> {
    let prefer = [
        (Role::ValLoss, Agg::Min),
        (Role::ValAcc, Agg::Last),
        (Role::TrainLoss, Agg::Min),
        (Role::TrainAcc, Agg::Last),
    ];
    for (role, agg) in prefer {
        let best = keys
            .clone()
            .into_iter()
            .filter_map(|k| classify(k).map(|m| (m, k)))
            .filter(|(m, _)| m.role == role && m.layer.is_none())
            .min_by_key(|(m, _)| m.rank);
        if let Some((_, key)) = best {
            return Some(Metric {
                key: key.to_string(),
                agg,
            });
        }
    }
    choices(keys).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_parse_print_and_know_their_good_end() {
        let m = Metric::parse("min:val/loss").unwrap();
        assert_eq!(
            m,
            Metric {
                key: "val/loss".into(),
                agg: Agg::Min
            }
        );
        assert_eq!(m.param(), "min:val/loss");
        assert_eq!(m.label(), "lowest val/loss");
        assert!(m.lower_is_better());
        // A key may hold a colon: only the first one splits.
        assert_eq!(Metric::parse("last:eval:acc").unwrap().key, "eval:acc");
        assert!(!Metric::parse("last:eval:acc").unwrap().lower_is_better());
        assert!(Metric::parse("last:val_error").unwrap().lower_is_better());
        assert!(!Metric::parse("max:val/loss").unwrap().lower_is_better());
        for bad in ["val/loss", "median:val/loss", "min:", ""] {
            assert!(Metric::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn values_are_finite_or_none() {
        let best = Metric::parse("min:val/loss").unwrap();
        let last = Metric::parse("last:val/loss").unwrap();
        let top = Metric::parse("max:val/acc").unwrap();
        assert_eq!(best.value(Some(f64::NAN), Some(0.3), Some(2.0)), Some(0.3));
        assert_eq!(last.value(Some(f64::NAN), Some(0.3), Some(2.0)), None);
        assert_eq!(last.value(Some(0.5), Some(0.3), Some(2.0)), Some(0.5));
        assert_eq!(top.value(None, Some(0.1), Some(0.9)), Some(0.9));
        assert_eq!(best.value(None, None, None), None);
    }

    #[test]
    fn choices_and_the_default() {
        let keys = ["train/loss", "val/acc", "grad_norm/fc1", "val/loss", "f1"];
        let c: Vec<String> = choices(keys).iter().map(Metric::param).collect();
        assert_eq!(
            c,
            [
                "min:train/loss",
                "last:train/loss",
                "max:val/acc",
                "last:val/acc",
                "min:val/loss",
                "last:val/loss",
                "max:f1",
                "last:f1"
            ],
            "a layer's series ranks nothing"
        );
        assert_eq!(default_metric(keys).unwrap().param(), "min:val/loss");
        assert_eq!(
            default_metric(["train/loss", "val/acc"]).unwrap().param(),
            "last:val/acc",
            "the final accuracy without a validation loss"
        );
        assert_eq!(
            default_metric(["train/loss"]).unwrap().param(),
            "min:train/loss"
        );
        assert_eq!(default_metric(["bleu"]).unwrap().param(), "max:bleu");
        assert_eq!(default_metric(["grad_norm/fc1"]), None);
        assert_eq!(default_metric(std::iter::empty()), None);
    }
}
