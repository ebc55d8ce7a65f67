//! Metric names → roles.
//!
//! Training scripts log the same quantity under different names depending on
//! the tool: trainlens' own `train/loss`, Keras' `loss`/`val_loss`, Hugging
//! Face Trainer's `loss`/`eval_loss`, PyTorch Lightning's `train_loss_step`,
//! MLflow autolog's `training_loss`, and so on. Storage never rewrites names
//! (DESIGN.md); the detectors ask this module what a key *means*.
//!
//! Matching is done on a normalised key: lower case, with `/`, `.`, `-` and
//! spaces turned into `_`. So `val/loss`, `val_loss` and `val-loss` are the
//! same thing, and Lightning's `lr-SGD` becomes `lr_sgd`.
//!
//! Per-layer signals use the trainlens convention `<signal>/<layer>` (see
//! FORMAT.md); the layer part is kept verbatim.

/// What a metric measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Training loss (mini-batch or epoch mean).
    TrainLoss,
    /// Validation / evaluation loss.
    ValLoss,
    /// Training accuracy.
    TrainAcc,
    /// Validation / evaluation accuracy.
    ValAcc,
    /// Learning rate.
    Lr,
    /// Epoch counter.
    Epoch,
    /// L2 norm of a layer's weight gradient (no layer: the global norm).
    GradNorm,
    /// L2 norm of a layer's weights.
    WeightNorm,
    /// ‖Δw‖ / ‖w‖ of one optimizer step.
    UpdateRatio,
    /// Mean activation of a layer.
    ActMean,
    /// Standard deviation of a layer's activations.
    ActStd,
    /// Share of ReLU units that never fire on the batch.
    DeadFrac,
    /// Share of saturated sigmoid/tanh outputs.
    SatFrac,
}

/// The meaning of one metric key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metric {
    pub role: Role,
    /// The layer for per-layer signals (`grad_norm/fc1` → `fc1`).
    pub layer: Option<String>,
    /// Preference among keys with the same role: lower is better. Used when a
    /// run logs several variants (Lightning's `train_loss_step` and
    /// `train_loss_epoch`, HF's per-step `loss` and the final `train_loss`).
    pub rank: u8,
}

/// Per-layer prefixes (trainlens convention) and Lightning's grad-norm tracker.
const LAYER_PREFIXES: &[(&str, Role)] = &[
    ("grad_norm/", Role::GradNorm),
    ("grad_2.0_norm/", Role::GradNorm),
    ("weight_norm/", Role::WeightNorm),
    ("update_ratio/", Role::UpdateRatio),
    ("act_mean/", Role::ActMean),
    ("act_std/", Role::ActStd),
    ("dead_frac/", Role::DeadFrac),
    ("sat_frac/", Role::SatFrac),
];

/// Whole-run keys after normalisation, with their rank.
const RUN_KEYS: &[(&str, Role, u8)] = &[
    // training loss
    ("train_loss", Role::TrainLoss, 0), // trainlens `train/loss`, Lightning
    ("loss", Role::TrainLoss, 1),       // Keras, HF Trainer
    ("train_loss_step", Role::TrainLoss, 1),
    ("training_loss", Role::TrainLoss, 2), // MLflow autolog
    ("train_batch_loss", Role::TrainLoss, 2),
    ("batch_loss", Role::TrainLoss, 3),
    ("loss_step", Role::TrainLoss, 3),
    ("train_loss_epoch", Role::TrainLoss, 4),
    ("epoch_loss", Role::TrainLoss, 4),
    ("loss_epoch", Role::TrainLoss, 4),
    // validation loss
    ("val_loss", Role::ValLoss, 0),
    ("eval_loss", Role::ValLoss, 1),
    ("validation_loss", Role::ValLoss, 1),
    ("valid_loss", Role::ValLoss, 1),
    ("val_loss_epoch", Role::ValLoss, 2),
    ("eval_loss_epoch", Role::ValLoss, 2),
    // training accuracy
    ("train_acc", Role::TrainAcc, 0),
    ("accuracy", Role::TrainAcc, 1),
    ("acc", Role::TrainAcc, 1),
    ("train_accuracy", Role::TrainAcc, 1),
    ("training_accuracy", Role::TrainAcc, 2),
    ("train_acc_epoch", Role::TrainAcc, 2),
    ("categorical_accuracy", Role::TrainAcc, 3),
    ("sparse_categorical_accuracy", Role::TrainAcc, 3),
    ("binary_accuracy", Role::TrainAcc, 3),
    ("train_acc_step", Role::TrainAcc, 4),
    // validation accuracy
    ("val_acc", Role::ValAcc, 0),
    ("val_accuracy", Role::ValAcc, 1),
    ("eval_accuracy", Role::ValAcc, 1),
    ("eval_acc", Role::ValAcc, 1),
    ("validation_accuracy", Role::ValAcc, 1),
    ("valid_acc", Role::ValAcc, 1),
    ("valid_accuracy", Role::ValAcc, 1),
    ("val_acc_epoch", Role::ValAcc, 2),
    ("val_categorical_accuracy", Role::ValAcc, 3),
    ("val_sparse_categorical_accuracy", Role::ValAcc, 3),
    ("val_binary_accuracy", Role::ValAcc, 3),
    // learning rate
    ("lr", Role::Lr, 0),
    ("learning_rate", Role::Lr, 1),
    ("train_learning_rate", Role::Lr, 1), // HF with W&B/TensorBoard: `train/learning_rate`
    ("train_lr", Role::Lr, 1),
    // epoch
    ("epoch", Role::Epoch, 0),
    ("train_epoch", Role::Epoch, 1),
    // global gradient norm (HF Trainer, Lightning)
    ("grad_norm", Role::GradNorm, 0),
    ("train_grad_norm", Role::GradNorm, 1),
    ("grad_2_0_norm_total", Role::GradNorm, 1),
    ("grad_norm_total", Role::GradNorm, 1),
];

/// The normalised whole-run keys that mean `role`, with their rank — what
/// [`classify`] answers `role` for (with `layer: None`), for matching keys in
/// SQL against `normalize`'s rule (the store's runs table sorts by them).
pub fn run_keys(role: Role) -> impl Iterator<Item = (&'static str, u8)> {
    RUN_KEYS
        .iter()
        .filter(move |(_, r, _)| *r == role)
        .map(|(k, _, rank)| (*k, *rank))
}

/// Lower-cases and unifies separators: `val/loss`, `Val-Loss` → `val_loss`.
pub fn normalize(key: &str) -> String {
    key.trim()
        .chars()
        .map(|c| match c {
            '/' | '.' | '-' | ' ' => '_',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// What `key` measures, or `None` for metrics the detectors do not use.
///
/// ```
/// use trainlens::diagnostics::names::{classify, Role};
/// assert_eq!(classify("val_loss").unwrap().role, Role::ValLoss);
/// let m = classify("grad_norm/fc1").unwrap();
/// assert_eq!((m.role, m.layer.as_deref()), (Role::GradNorm, Some("fc1")));
/// ```
pub fn classify(key: &str) -> Option<Metric> {
    for (prefix, role) in LAYER_PREFIXES {
        if let Some(layer) = key.strip_prefix(prefix)
            && !layer.is_empty()
        {
            return Some(Metric {
                role: *role,
                layer: Some(layer.to_string()),
                rank: 0,
            });
        }
    }
    let norm = normalize(key);
    if let Some((_, role, rank)) = RUN_KEYS.iter().find(|(k, _, _)| *k == norm) {
        return Some(Metric {
            role: *role,
            layer: None,
            rank: *rank,
        });
    }
    // Lightning's LearningRateMonitor: `lr-SGD`, `lr-Adam/pg1`, `lr-AdamW-momentum`
    // is not a learning rate, so only plain optimizer names and param groups.
    if let Some(rest) = norm.strip_prefix("lr_")
        && !rest.contains("momentum")
        && !rest.contains("weight_decay")
    {
        return Some(Metric {
            role: Role::Lr,
            layer: None,
            rank: 2,
        });
    }
    None
}

/// A training setting read from a run's config (hyperparameters as the
/// script, Keras, Hugging Face `TrainingArguments`, Lightning `hparams` or
/// MLflow autolog's params name them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// Samples per optimizer step (per device for HF).
    BatchSize,
    /// Micro-batches accumulated into one optimizer step.
    GradAccumulation,
    /// A warm-up length (steps, epochs or a ratio of the run; 0 = none).
    Warmup,
    /// The LR scheduler's name.
    Scheduler,
    /// Dropout probability.
    Dropout,
    /// Weight decay.
    WeightDecay,
    /// SGD momentum, or Adam's β1 (Keras `beta_1`, HF `adam_beta1`).
    Momentum,
}

/// Config keys after [`normalize`], per setting, most specific first.
const SETTING_KEYS: &[(Setting, &[&str])] = &[
    (
        Setting::BatchSize,
        &[
            "batch_size",
            "train_batch_size",
            "per_device_train_batch_size", // HF TrainingArguments
            "batch",
            "bs",
        ],
    ),
    (
        Setting::GradAccumulation,
        &[
            "gradient_accumulation_steps", // HF
            "accumulate_grad_batches",     // Lightning Trainer
            "grad_accum",
        ],
    ),
    (
        Setting::Warmup,
        &[
            "warmup_steps", // HF, timm
            "warmup_ratio", // HF
            "num_warmup_steps",
            "warmup_epochs",
            "warmup_iters",   // nanoGPT
            "warmup_updates", // fairseq
            "lr_warmup_steps",
            "warmup",
        ],
    ),
    (
        Setting::Scheduler,
        &[
            "lr_scheduler_type", // HF
            "lr_scheduler",
            "scheduler",
            "lr_schedule",
            "schedule",
            "sched",
        ],
    ),
    (
        Setting::Dropout,
        &[
            "dropout",
            "dropout_rate",
            "hidden_dropout_prob",
            "p_dropout",
        ],
    ),
    (Setting::WeightDecay, &["weight_decay", "wd", "l2"]),
    (
        Setting::Momentum,
        &["momentum", "beta1", "beta_1", "adam_beta1"],
    ),
];

/// The value of a setting in `config`: a top-level key, else one inside a
/// top-level object (Hydra / nested configs: `{"train": {"batch_size": 32}}`).
/// Keys are compared after [`normalize`].
pub fn setting(config: &serde_json::Value, which: Setting) -> Option<&serde_json::Value> {
    let keys = SETTING_KEYS.iter().find(|(s, _)| *s == which)?.1;
    fn find<'v>(
        obj: &'v serde_json::Map<String, serde_json::Value>,
        keys: &[&str],
    ) -> Option<&'v serde_json::Value> {
        keys.iter().find_map(|k| {
            obj.iter()
                .find(|(key, v)| normalize(key) == *k && !v.is_null())
                .map(|(_, v)| v)
        })
    }
    let obj = config.as_object()?;
    find(obj, keys).or_else(|| {
        obj.values()
            .filter_map(|v| v.as_object())
            .find_map(|o| find(o, keys))
    })
}

/// A numeric setting (a number, a numeric string, or a bool as 0/1).
pub fn setting_f64(config: &serde_json::Value, which: Setting) -> Option<f64> {
    let v = setting(config, which)?;
    v.as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .or_else(|| v.as_bool().map(|b| if b { 1.0 } else { 0.0 }))
        .filter(|x| x.is_finite())
}

/// The histogram families `trainlens.torch.watch` logs, in the order the
/// pages show them.
pub const HISTOGRAM_PREFIXES: &[&str] = &["weights/", "grads/", "activations/"];

/// `(family index in HISTOGRAM_PREFIXES, layer)` of a histogram key such as
/// `weights/fc1`, or `None` for other histograms.
///
/// ```
/// use trainlens::diagnostics::names::histogram_layer;
/// assert_eq!(histogram_layer("grads/fc1"), Some((1, "fc1")));
/// assert_eq!(histogram_layer("logits"), None);
/// ```
pub fn histogram_layer(key: &str) -> Option<(usize, &str)> {
    HISTOGRAM_PREFIXES.iter().enumerate().find_map(|(i, p)| {
        key.strip_prefix(p)
            .filter(|l| !l.is_empty())
            .map(|l| (i, l))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(key: &str) -> Option<Role> {
        classify(key).map(|m| m.role)
    }

    #[test]
    fn run_keys_agree_with_classify() {
        for role in [Role::ValLoss, Role::ValAcc, Role::TrainLoss] {
            let keys: Vec<_> = run_keys(role).collect();
            assert!(!keys.is_empty());
            for (k, rank) in keys {
                assert_eq!(normalize(k), k);
                let m = classify(k).unwrap();
                assert_eq!((m.role, m.rank, m.layer), (role, rank, None));
            }
        }
    }

    /// The names each framework writes for the common metrics, with the
    /// role they are read as.
    #[test]
    fn framework_names() {
        use Role::*;
        for (key, want) in [
            // trainlens
            ("train/loss", TrainLoss),
            ("val/loss", ValLoss),
            ("train/acc", TrainAcc),
            ("val/acc", ValAcc),
            ("lr", Lr),
            ("epoch", Epoch),
            // Keras
            ("loss", TrainLoss),
            ("val_loss", ValLoss),
            ("accuracy", TrainAcc),
            ("val_accuracy", ValAcc),
            ("learning_rate", Lr),
            ("sparse_categorical_accuracy", TrainAcc),
            // Hugging Face
            ("eval_loss", ValLoss),
            ("train_accuracy", TrainAcc),
            ("eval_accuracy", ValAcc),
            // HF's end-of-training summary `train_loss` ranks below per-step
            // `loss` only through the number of points; both are training
            // losses.
            ("train_loss", TrainLoss),
            // The W&B flavour of the Hugging Face names.
            ("eval/loss", ValLoss),
            ("train/learning_rate", Lr),
            ("train/grad_norm", GradNorm),
            // Lightning
            ("train_loss_step", TrainLoss),
            ("train_loss_epoch", TrainLoss),
            ("val_acc", ValAcc),
            ("lr-SGD", Lr),
            ("lr-Adam/pg1", Lr),
            ("grad_2.0_norm_total", GradNorm),
            // MLflow
            ("training_loss", TrainLoss),
            ("validation_loss", ValLoss),
            ("training_accuracy", TrainAcc),
            ("validation_accuracy", ValAcc),
        ] {
            assert_eq!(role(key), Some(want), "{key}");
        }
    }

    #[test]
    fn trainlens_layer_names() {
        for (key, r, layer) in [
            ("grad_norm/fc1", Role::GradNorm, "fc1"),
            ("weight_norm/head", Role::WeightNorm, "head"),
            ("update_ratio/fc2", Role::UpdateRatio, "fc2"),
            ("act_mean/fc1", Role::ActMean, "fc1"),
            ("act_std/fc1", Role::ActStd, "fc1"),
            ("dead_frac/fc3", Role::DeadFrac, "fc3"),
            ("sat_frac/fc1", Role::SatFrac, "fc1"),
        ] {
            let m = classify(key).unwrap();
            assert_eq!((m.role, m.layer.as_deref()), (r, Some(layer)), "{key}");
        }
    }

    #[test]
    fn hugging_face_grad_norm_is_the_whole_model() {
        let g = classify("grad_norm").unwrap();
        assert_eq!((g.role, g.layer), (Role::GradNorm, None));
    }

    #[test]
    fn lightning_names() {
        assert!(
            classify("train_loss_step").unwrap().rank < classify("train_loss_epoch").unwrap().rank
        );
        assert_eq!(role("lr-SGD-momentum"), None);
        let g = classify("grad_2.0_norm/layer1.weight").unwrap();
        assert_eq!(
            (g.role, g.layer.as_deref()),
            (Role::GradNorm, Some("layer1.weight"))
        );
    }

    /// Every key the MLflow integrations wrote in tests/mlflow_autolog.rs
    /// (transformers 5.25, lightning 2.6, keras 3.15 with mlflow 3.18),
    /// with the role the detectors read it as.
    #[test]
    fn keys_the_mlflow_autologgers_write() {
        use Role::*;
        let hf = [
            ("loss", Some(TrainLoss)),
            ("train_loss", Some(TrainLoss)), // the end-of-training summary
            ("eval_loss", Some(ValLoss)),
            ("learning_rate", Some(Lr)),
            ("grad_norm", Some(GradNorm)),
            ("epoch", Some(Epoch)),
            ("eval_runtime", None),
            ("eval_samples_per_second", None),
            ("total_flos", None),
            ("train_steps_per_second", None),
        ];
        let lightning = [
            ("train_loss_step", Some(TrainLoss)),
            ("train_loss_epoch", Some(TrainLoss)),
            ("val_loss", Some(ValLoss)),
            ("epoch", Some(Epoch)),
            ("lr-Adam", Some(Lr)), // LearningRateMonitor
        ];
        let keras = [
            ("loss", Some(TrainLoss)),
            ("accuracy", Some(TrainAcc)),
            ("val_loss", Some(ValLoss)),
            ("val_accuracy", Some(ValAcc)),
            // MlflowCallback.on_test_end, logged without a step
            ("validation_loss", Some(ValLoss)),
            ("validation_accuracy", Some(ValAcc)),
        ];
        for (key, want) in hf.iter().chain(&lightning).chain(&keras) {
            assert_eq!(role(key), *want, "{key}");
        }
        // Per step beats per epoch; `val_loss` beats the stepless copy.
        let rank = |k| classify(k).unwrap().rank;
        assert!(rank("train_loss_step") < rank("train_loss_epoch"));
        assert!(rank("val_loss") < rank("validation_loss"));
    }

    #[test]
    fn settings_from_other_tools_configs() {
        use serde_json::json;
        let hf = json!({"per_device_train_batch_size": 8, "gradient_accumulation_steps": 4, "warmup_ratio": 0.1, "lr_scheduler_type": "linear"});
        assert_eq!(setting_f64(&hf, Setting::BatchSize), Some(8.0));
        assert_eq!(setting_f64(&hf, Setting::GradAccumulation), Some(4.0));
        assert_eq!(setting_f64(&hf, Setting::Warmup), Some(0.1));
        assert_eq!(setting(&hf, Setting::Scheduler), Some(&json!("linear")));
        let nested = json!({"model": "mlp", "train": {"Batch-Size": "64", "dropout": 0.2}});
        assert_eq!(setting_f64(&nested, Setting::BatchSize), Some(64.0));
        assert_eq!(setting_f64(&nested, Setting::Dropout), Some(0.2));
        assert_eq!(
            setting_f64(&json!({"batch_size": null}), Setting::BatchSize),
            None
        );
        assert_eq!(setting_f64(&json!([1, 2]), Setting::BatchSize), None);
    }

    #[test]
    fn unrelated_keys_are_ignored() {
        for key in [
            "",
            "f1",
            "val/f1",
            "lr_momentum",
            "grad_norm/",
            "throughput",
            "test_loss",
        ] {
            assert_eq!(role(key), None, "{key}");
        }
        assert_eq!(normalize(" Val-Loss "), "val_loss");
    }
}
