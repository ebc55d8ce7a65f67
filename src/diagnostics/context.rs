//! What the detectors share: the run's series resolved to roles (through
//! [`names`](super::names)), layers in input→output order, epoch boundaries,
//! the task (classification with K classes and a class prior, or regression)
//! and a few derived quantities (chance-level loss and accuracy, current LR).

use std::collections::BTreeMap;

use super::names::{Role, classify};
use super::stats::{fmt_num, head_median, median, recent_len, tail_median};
use super::{RunView, Series};

/// A series with the key it was logged under.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Named<'a> {
    pub key: &'a str,
    pub series: &'a Series,
}

/// What a per-layer series measures: a weight matrix (or kernel), a bias,
/// or a normalisation layer's scale/shift. Scripts that log
/// `p.grad.norm()` for every parameter give one "layer" per parameter
/// (`0.weight`, `0.bias`, `encoder.layers.0.norm1.weight`); only weights
/// carry the signal the gradient rules compare across layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Param {
    #[default]
    Weight,
    Bias,
    Norm,
}

/// The per-layer signals of one layer.
#[derive(Debug, Default)]
pub(crate) struct Layer<'a> {
    pub name: String,
    pub activation: Option<String>,
    pub trainable: Option<bool>,
    pub is_output: bool,
    pub param: Param,
    pub signals: BTreeMap<Role, Named<'a>>,
}

impl Layer<'_> {
    pub fn is_weight(&self) -> bool {
        self.param == Param::Weight
    }
}

/// The parameter kind of a series' layer name: the last dotted component
/// names the parameter (`bias`, `bias_ih_l0`, `in_proj_bias` → bias); a
/// component naming a normalisation module (`norm1`, `ln_f`, `bn2`,
/// `layer_norm`, `batchnorm`) makes it a normalisation parameter.
/// `module_type` is the model record's type of the owning module.
pub(crate) fn param_kind(name: &str, module_type: Option<&str>) -> Param {
    let lower = name.to_ascii_lowercase();
    let last = lower.rsplit('.').next().unwrap_or("");
    if last.contains("bias") {
        return Param::Bias;
    }
    if module_type.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t.contains("norm")
    }) {
        return Param::Norm;
    }
    let is_norm = |c: &str| {
        c.contains("norm")
            || c.starts_with("ln")
            || (c.starts_with("bn") && c[2..].chars().all(|x| x.is_ascii_digit() || x == '_'))
    };
    if lower.split('.').any(is_norm) {
        return Param::Norm;
    }
    Param::Weight
}

/// The module that owns a per-parameter series' layer name: `0.weight` →
/// `0`, `rnn.weight_hh_l0` → `rnn`, `encoder.layers.0.self_attn.in_proj_weight`
/// → `encoder.layers.0.self_attn`. `None` when the name has no dot.
fn owner_module(name: &str) -> Option<&str> {
    let (module, param) = name.rsplit_once('.')?;
    let p = param.to_ascii_lowercase();
    (p.contains("weight") || p.contains("bias") || p == "kernel").then_some(module)
}

impl<'a> Layer<'a> {
    pub fn get(&self, role: Role) -> Option<Named<'a>> {
        self.signals.get(&role).copied()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Task {
    Classification {
        classes: Option<usize>,
        prior: Option<Vec<f64>>,
    },
    Regression,
    Unknown,
}

pub(crate) struct Ctx<'a> {
    pub view: &'a RunView,
    pub train_loss: Option<Named<'a>>,
    pub val_loss: Option<Named<'a>>,
    pub train_acc: Option<Named<'a>>,
    pub val_acc: Option<Named<'a>>,
    pub lr: Option<Named<'a>>,
    /// A whole-model gradient norm (HF Trainer's `grad_norm`).
    pub global_grad: Option<Named<'a>>,
    /// Layers in input → output order.
    pub layers: Vec<Layer<'a>>,
    /// Steps at which epochs (evaluations) ended, ascending.
    pub epoch_ends: Vec<u64>,
    pub task: Task,
}

/// Steps where epochs end, from an `epoch` series. One point per epoch (our
/// format, Keras) gives its steps; an epoch counter logged with every metric
/// (Lightning: the same integer many times; HF Trainer: fractional epochs)
/// gives the last step of each run of points with the same whole epoch.
fn epoch_boundaries(epoch: &Series) -> Vec<u64> {
    let mut out = Vec::new();
    let n = epoch.len();
    for i in 0..n {
        let (v, step) = (epoch.values[i], epoch.steps[i]);
        if !v.is_finite() {
            continue;
        }
        let next_same = epoch.values[i + 1..n]
            .iter()
            .find(|x| x.is_finite())
            .is_some_and(|x| x.floor() == v.floor());
        if !next_same {
            out.push(step);
        }
    }
    out
}

/// Size of the start / recent windows of a series of `n` points: 5, or a
/// quarter of the series when it is short.
fn edge_len(n: usize) -> usize {
    (n / 4).clamp(1, 5)
}

/// What loss names that expect class scores contain (besides `ce` itself).
const CLASSIFICATION_LOSSES: &[&str] = &["cross_entropy", "crossentropy", "nll", "bce", "hinge"];
/// What regression loss names contain.
const REGRESSION_LOSSES: &[&str] = &[
    "mse",
    "mae",
    "l1",
    "l2",
    "huber",
    "mean_squared",
    "mean_absolute",
    "smooth_l1",
    "rmse",
];

/// Loss names that expect class scores.
fn is_classification_loss(loss: &str) -> bool {
    let l = loss.to_ascii_lowercase();
    l == "ce" || CLASSIFICATION_LOSSES.iter().any(|k| l.contains(k))
}

fn is_regression_loss(loss: &str) -> bool {
    let l = loss.to_ascii_lowercase();
    REGRESSION_LOSSES.iter().any(|k| l.contains(k))
}

/// Output-layer names used when no model summary gives the order.
fn looks_like_output(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    [
        "head",
        "out",
        "output",
        "classifier",
        "logits",
        "fc_out",
        "final",
        // ResNet's and many scripts' single last layer, a language model's
        // output projection (PyTorch's word-language-model example: `decoder`).
        "fc",
        "lm_head",
        "decoder",
    ]
    .iter()
    .any(|k| n == *k || n.starts_with(&format!("{k}.")) || n.ends_with(&format!(".{k}")))
}

/// Names of embedding tables and learned position tables: their gradient
/// touches only the rows of the tokens in the batch, so its norm is not
/// comparable with a dense layer's.
pub(crate) fn looks_like_embedding(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.split('.').any(|c| {
        c.starts_with("emb")
            || c.contains("embedding")
            || matches!(
                c,
                "wte" | "wpe" | "pos" | "pos_emb" | "position" | "positional"
            )
    })
}

/// An optimizer's family: adaptive ones (Adam, RMSprop, ...) normalise the
/// gradient, so their sensible learning rates are ~100× smaller than SGD's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OptFamily {
    Sgd,
    Adaptive,
}

/// The largest learning rate that is ordinary for an adaptive optimizer
/// (Adam's default 1e-3; transformers train at 1e-4–1e-3 with warm-up).
pub(crate) const ADAPTIVE_LR_MAX: f64 = 1e-3;

/// Natural order: `fc2` before `fc10`.
fn natural_key(name: &str) -> (String, u64, String) {
    let digits_at = name
        .find(|c: char| c.is_ascii_digit())
        .unwrap_or(name.len());
    let (prefix, rest) = name.split_at(digits_at);
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let num = rest[..end].parse().unwrap_or(0);
    (prefix.to_string(), num, rest[end..].to_string())
}

impl<'a> Ctx<'a> {
    pub fn new(view: &'a RunView) -> Self {
        // Resolve whole-run roles. Losses: the series with most points wins
        // (per-step beats per-epoch beats an end-of-run summary); accuracy and
        // the rest: the best-ranked name wins.
        let mut best: BTreeMap<Role, (Named<'a>, u8)> = BTreeMap::new();
        let mut layer_signals: BTreeMap<String, BTreeMap<Role, Named<'a>>> = BTreeMap::new();
        for (key, series) in &view.scalars {
            if series.is_empty() {
                continue;
            }
            let Some(m) = classify(key) else { continue };
            let named = Named {
                key: key.as_str(),
                series,
            };
            if let Some(layer) = m.layer {
                layer_signals
                    .entry(layer)
                    .or_default()
                    .insert(m.role, named);
                continue;
            }
            let better = match best.get(&m.role) {
                None => true,
                Some((old, rank)) => {
                    let by_points = matches!(m.role, Role::TrainLoss | Role::ValLoss);
                    if by_points {
                        (series.len(), std::cmp::Reverse(m.rank))
                            > (old.series.len(), std::cmp::Reverse(*rank))
                    } else {
                        (std::cmp::Reverse(m.rank), series.len())
                            > (std::cmp::Reverse(*rank), old.series.len())
                    }
                }
            };
            if better {
                best.insert(m.role, (named, m.rank));
            }
        }
        let pick = |role| best.get(&role).map(|(n, _)| *n);

        // Layer order: the model summary's, then the rest in natural order.
        let model_layers = view
            .model
            .as_ref()
            .map(|m| m.layers.as_slice())
            .unwrap_or(&[]);
        // By name, the first of equal names: linear in layers (a model record
        // may have 10k of them).
        let mut by_name: std::collections::HashMap<&str, &crate::record::Layer> =
            std::collections::HashMap::with_capacity(model_layers.len());
        for l in model_layers {
            by_name.entry(l.name.as_str()).or_insert(l);
        }
        // A series named by parameter (`0.weight`, `rnn.weight_ih_l0`) belongs
        // to the model record's layer of its owning module: it takes that
        // layer's place in the order and its activation and trainable flag.
        fn owner_in<'k, V>(
            by_name: &std::collections::HashMap<&str, V>,
            k: &'k str,
        ) -> Option<&'k str> {
            if by_name.contains_key(k) {
                return Some(k);
            }
            owner_module(k).filter(|m| by_name.contains_key(m))
        }
        let mut grouped: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        let mut extra: Vec<String> = Vec::new();
        for k in layer_signals.keys() {
            match owner_in(&by_name, k) {
                Some(m) if m != k.as_str() => grouped.entry(m).or_default().push(k.clone()),
                Some(_) => {}
                None => extra.push(k.clone()),
            }
        }
        let mut names: Vec<String> = Vec::new();
        for l in model_layers {
            if names.last() == Some(&l.name) {
                continue;
            }
            names.push(l.name.clone());
            if let Some(mut params) = grouped.remove(l.name.as_str()) {
                params.sort_by_key(|n| natural_key(n));
                names.extend(params);
            }
        }
        extra.sort_by_key(|n| (looks_like_output(n), natural_key(n)));
        names.extend(extra);
        let output_module = if model_layers.is_empty() {
            // Without a model record: the last output-looking name (or the
            // last one), by its owning module when named by parameter.
            let weights: Vec<&String> = names
                .iter()
                .filter(|n| param_kind(n, None) == Param::Weight)
                .collect();
            weights
                .iter()
                .rev()
                .find(|n| looks_like_output(owner_module(n).unwrap_or(n)) || looks_like_output(n))
                .or(weights.last())
                .map(|n| owner_module(n).unwrap_or(n).to_string())
        } else {
            model_layers.last().map(|l| l.name.clone())
        };
        let layers = names
            .into_iter()
            .map(|name| {
                let module = if by_name.contains_key(name.as_str()) {
                    Some(name.as_str())
                } else {
                    owner_in(&by_name, &name).or_else(|| owner_module(&name))
                };
                let info = module.and_then(|m| by_name.get(m)).copied();
                let param = param_kind(&name, info.and_then(|l| l.kind.as_deref()));
                let is_output = param == Param::Weight
                    && output_module
                        .as_deref()
                        .is_some_and(|o| o == name || module == Some(o));
                Layer {
                    activation: info
                        .and_then(|l| l.activation.clone())
                        .map(|a| a.to_ascii_lowercase()),
                    trainable: info.and_then(|l| l.trainable),
                    is_output,
                    param,
                    signals: layer_signals.remove(&name).unwrap_or_default(),
                    name,
                }
            })
            .collect();

        let train_loss = pick(Role::TrainLoss);
        let val_loss = pick(Role::ValLoss);
        let val_acc = pick(Role::ValAcc);
        let train_acc = pick(Role::TrainAcc);
        let from_epoch = pick(Role::Epoch)
            .map(|e| epoch_boundaries(e.series))
            .filter(|b| b.len() >= 2);
        let mut epoch_ends: Vec<u64> = match (from_epoch, val_loss.or(val_acc)) {
            (Some(b), _) => b,
            (None, Some(v)) => v.series.steps.clone(),
            (None, None) => match (train_acc, train_loss) {
                (Some(a), Some(l)) if a.series.len() * 2 < l.series.len() => a.series.steps.clone(),
                _ => Vec::new(),
            },
        };
        epoch_ends.dedup();

        let task = Self::task(view, train_acc.is_some() || val_acc.is_some());
        Ctx {
            view,
            train_loss,
            val_loss,
            train_acc,
            val_acc,
            lr: pick(Role::Lr),
            global_grad: pick(Role::GradNorm),
            layers,
            epoch_ends,
            task,
        }
    }

    fn task(view: &RunView, has_acc: bool) -> Task {
        let loss = view
            .model
            .as_ref()
            .and_then(|m| m.loss.as_deref())
            .unwrap_or("");
        let counts: Option<Vec<f64>> = view
            .dataset("train")
            .and_then(|d| d.class_counts.as_ref())
            .map(|cc| {
                cc.values()
                    .filter_map(|v| v.as_f64())
                    .filter(|v| v.is_finite() && *v >= 0.0)
                    .collect()
            })
            .filter(|c: &Vec<f64>| c.len() >= 2);
        // Class counts make it classification whatever the loss (MSE on
        // one-hot targets exists); otherwise a regression loss decides.
        if counts.is_none() && is_regression_loss(loss) {
            return Task::Regression;
        }
        if !(is_classification_loss(loss) || counts.is_some() || has_acc) {
            return if loss.is_empty() {
                Task::Unknown
            } else {
                Task::Regression
            };
        }
        let head_out = view
            .model
            .as_ref()
            .and_then(|m| m.layers.last())
            .and_then(|l| l.outputs)
            .filter(|&o| o >= 2)
            .map(|o| o as usize);
        let prior = counts.as_ref().and_then(|c| {
            let total: f64 = c.iter().sum();
            (total > 0.0).then(|| c.iter().map(|x| x / total).collect::<Vec<f64>>())
        });
        let classes = counts.as_ref().map(|c| c.len()).or(head_out);
        Task::Classification { classes, prior }
    }

    /// The loss of predicting the class prior (or uniform) for every sample:
    /// what cross-entropy starts at with a sensible initialisation.
    pub fn chance_loss(&self) -> Option<f64> {
        let Task::Classification { classes, prior } = &self.task else {
            return None;
        };
        if let Some(loss) = self.view.model.as_ref().and_then(|m| m.loss.as_deref())
            && !is_classification_loss(loss)
        {
            return None;
        }
        match (prior, classes) {
            (Some(p), _) => Some(
                -p.iter()
                    .filter(|&&x| x > 0.0)
                    .map(|x| x * x.ln())
                    .sum::<f64>(),
            )
            .filter(|h| *h > 0.0),
            (None, Some(k)) => Some((*k as f64).ln()),
            _ => None,
        }
    }

    /// Accuracy of always predicting the majority class (1/K if the prior is
    /// unknown).
    pub fn chance_acc(&self) -> Option<f64> {
        let Task::Classification { classes, prior } = &self.task else {
            return None;
        };
        match (prior, classes) {
            (Some(p), _) => p.iter().copied().reduce(f64::max),
            (None, Some(k)) => Some(1.0 / *k as f64),
            _ => None,
        }
    }

    /// The series at epoch granularity: unchanged if it already has about one
    /// point per epoch, otherwise the median of each epoch's points (step =
    /// the epoch's last step). Without epoch boundaries a long series is cut
    /// into 20 equal chunks.
    pub fn epoch_level(&self, s: &Series) -> Vec<(u64, f64)> {
        let n = s.len();
        let ends = &self.epoch_ends;
        if n == 0 {
            return Vec::new();
        }
        if ends.len() >= 2 && n * 2 <= ends.len() * 3 || ends.len() < 2 && n <= 60 {
            return s
                .steps
                .iter()
                .copied()
                .zip(s.values.iter().copied())
                .take(n)
                .collect();
        }
        let mut out = Vec::new();
        let mut buf: Vec<f64> = Vec::new();
        let mut push = |buf: &mut Vec<f64>, step: u64, nonfinite: bool| {
            if let Some(m) = super::stats::median_in_place(buf) {
                out.push((step, m));
            } else if nonfinite {
                out.push((step, f64::NAN));
            }
            buf.clear();
        };
        if ends.len() >= 2 {
            let mut e = 0;
            let mut saw_nonfinite = false;
            for i in 0..n {
                let (step, v) = (s.steps[i], s.values[i]);
                while e < ends.len() && step > ends[e] {
                    push(&mut buf, ends[e], saw_nonfinite);
                    saw_nonfinite = false;
                    e += 1;
                }
                if v.is_finite() {
                    buf.push(v);
                } else {
                    saw_nonfinite = true;
                }
            }
            let last = ends.get(e).copied().unwrap_or(s.steps[n - 1]);
            push(&mut buf, last, saw_nonfinite);
        } else {
            let chunk = n.div_ceil(20);
            for start in (0..n).step_by(chunk) {
                let end = (start + chunk).min(n);
                buf.extend(
                    s.values[start..end]
                        .iter()
                        .copied()
                        .filter(|v| v.is_finite()),
                );
                let nonfinite = buf.len() < end - start;
                push(&mut buf, s.steps[end - 1], nonfinite);
            }
        }
        out
    }

    /// Number of evaluations (epochs) seen so far.
    pub fn epochs_seen(&self) -> usize {
        let evals = [self.val_loss, self.val_acc, self.train_acc]
            .iter()
            .flatten()
            .map(|n| n.series.len())
            .max()
            .unwrap_or(0);
        evals.max(self.epoch_ends.len())
    }

    /// The learning rate now: last logged value, else the optimizer's, else
    /// the config's `lr` / `learning_rate`.
    pub fn current_lr(&self) -> Option<f64> {
        if let Some(lr) = self.lr
            && let Some(v) = lr
                .series
                .values
                .iter()
                .rev()
                .find(|v| v.is_finite() && **v > 0.0)
        {
            return Some(*v);
        }
        if let Some(lr) = self
            .view
            .model
            .as_ref()
            .and_then(|m| m.optimizer.as_ref())
            .and_then(|o| o.lr)
            .filter(|v| v.is_finite() && *v > 0.0)
        {
            return Some(lr);
        }
        ["lr", "learning_rate"]
            .iter()
            .find_map(|k| self.view.config.get(k).and_then(|v| v.as_f64()))
            .filter(|v| v.is_finite() && *v > 0.0)
    }

    /// The largest learning rate used so far.
    pub fn peak_lr(&self) -> Option<f64> {
        self.lr
            .and_then(|lr| {
                lr.series
                    .values
                    .iter()
                    .copied()
                    .filter(|v| v.is_finite())
                    .reduce(f64::max)
            })
            .or_else(|| self.current_lr())
    }

    /// "Lower the learning rate ÷10 (5 → 0.5)" with the actual values when
    /// known. For an adaptive optimizer (Adam & co.) whose peak LR is above
    /// its ordinary range, ÷10 is not enough (Adam at 1 → 0.1 still
    /// diverges): the target is the top of that range, [`ADAPTIVE_LR_MAX`].
    pub fn lower_lr_fix(&self, why: &str) -> String {
        match self.peak_lr() {
            Some(lr)
                if self.optimizer_family() == Some(OptFamily::Adaptive)
                    && lr / 10.0 > ADAPTIVE_LR_MAX =>
            {
                format!(
                    "Lower the learning rate to the ordinary range of {}: {} → {}{why} (÷10 would still be far too high){}.",
                    self.optimizer_name()
                        .unwrap_or_else(|| "an adaptive optimizer".into()),
                    fmt_num(lr),
                    fmt_num(ADAPTIVE_LR_MAX),
                    if self.in_warmup_from_start() {
                        ""
                    } else {
                        ", with a linear warm-up over the first few hundred steps"
                    }
                )
            }
            Some(lr) => format!(
                "Lower the learning rate ÷10: {} → {}{why}.",
                fmt_num(lr),
                fmt_num(lr / 10.0)
            ),
            None => format!("Lower the learning rate ÷10{why}."),
        }
    }

    /// The optimizer's name (model record, else the config's `optimizer` /
    /// `opt`), lower case.
    pub fn optimizer_name(&self) -> Option<String> {
        self.view
            .model
            .as_ref()
            .and_then(|m| m.optimizer.as_ref())
            .and_then(|o| o.name.clone())
            .or_else(|| {
                ["optimizer", "opt", "optim"].iter().find_map(|k| {
                    self.view
                        .config
                        .get(k)
                        .and_then(|v| v.as_str())
                        .map(String::from)
                })
            })
            .map(|n| n.to_ascii_lowercase())
    }

    pub fn optimizer_family(&self) -> Option<OptFamily> {
        let n = self.optimizer_name()?;
        if [
            "adam",
            "rmsprop",
            "adagrad",
            "adadelta",
            "adamax",
            "nadam",
            "lamb",
            "lion",
            "adafactor",
        ]
        .iter()
        .any(|a| n.contains(a))
        {
            Some(OptFamily::Adaptive)
        } else if n.contains("sgd") || n.contains("momentum") {
            Some(OptFamily::Sgd)
        } else {
            None
        }
    }

    /// The logged LR starts at the lowest value it ever has and rises ×2 or
    /// more: a warm-up was configured.
    pub fn in_warmup_from_start(&self) -> bool {
        let Some(lr) = self.lr else { return false };
        let v: Vec<f64> = lr
            .series
            .values
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .collect();
        let (Some(first), Some(peak)) = (v.first(), v.iter().copied().reduce(f64::max)) else {
            return false;
        };
        peak >= 2.0 * first && v.iter().all(|x| x >= first)
    }

    /// The last step at or before `step` where the logged LR was raised
    /// above anything used before: ×3 or more over the previous value *and*
    /// over the peak so far (a warm-up ramps by smaller steps; a warm
    /// restart returns to the old peak). Returns (step, LR before, LR after).
    /// A blow-up that follows such a raise began with it.
    pub fn lr_raised_before(&self, step: u64) -> Option<(u64, f64, f64)> {
        let lr = self.lr?;
        let (steps, values) = (&lr.series.steps, &lr.series.values);
        let mut peak = f64::NEG_INFINITY;
        let mut prev = f64::NAN;
        let mut found = None;
        for (s, v) in steps.iter().zip(values) {
            if *s > step {
                break;
            }
            if !(v.is_finite() && *v > 0.0) {
                continue;
            }
            if prev.is_finite() && *v >= 3.0 * prev && *v >= 3.0 * peak {
                found = Some((*s, prev, *v));
            }
            peak = peak.max(*v);
            prev = *v;
        }
        found
    }

    /// The training loss jumped far above where it started at some point:
    /// a point ≥ 4× the start (or the chance level, if higher). A batch of a
    /// learning model scores at most a few × the mean loss; 4× above where
    /// the untrained model started means the updates threw the weights away,
    /// however briefly. After such a spike, a larger learning rate is never
    /// the fix (and a stall is not slowness).
    pub fn loss_spiked(&self) -> bool {
        let Some(l) = self.train_loss else {
            return false;
        };
        let v = &l.series.values;
        let Some(start) = head_median(v, edge_len(v.len()).min(3)) else {
            return false;
        };
        let base = self.chance_loss().map_or(start, |c| c.max(start));
        if base.is_nan() || base <= 0.0 {
            return false;
        }
        v.iter()
            .any(|x| x.is_finite() && *x >= LOSS_SPIKE_FACTOR * base)
    }

    /// Whether the model is short of fitting its training data: the
    /// training accuracy (median of the last 3 evaluations) is less than 90%
    /// of the way from chance to perfect, or, without accuracy, the recent
    /// loss is > 20% of the chance level. `None` when neither is known (and
    /// for language models, whose accuracy has an irreducible ceiling).
    pub fn unfinished(&self) -> Option<bool> {
        if self.is_language_model() {
            return None;
        }
        if let Some(a) = self.train_acc.and_then(|a| self.epoch_tail(a.series, 3)) {
            let norm = match self.chance_acc() {
                Some(c) if c < 1.0 => (a - c) / (1.0 - c),
                _ => a,
            };
            return Some(norm < 0.9);
        }
        let c = self.chance_loss().filter(|c| *c > 0.0)?;
        Some(self.loss_recent()? / c > 0.2)
    }

    /// A language model: the model record starts with an embedding table of
    /// as many rows as the output layer has classes (next-token prediction).
    /// Its accuracy and loss have an irreducible floor set by the text's
    /// entropy, so "far from perfect" says nothing about capacity.
    pub fn is_language_model(&self) -> bool {
        let Some(m) = self.view.model.as_ref() else {
            return false;
        };
        let (Some(first), Some(last)) = (m.layers.first(), m.layers.last()) else {
            return false;
        };
        let embedding = first
            .kind
            .as_deref()
            .is_some_and(|t| t.to_ascii_lowercase().contains("embedding"))
            || looks_like_embedding(&first.name);
        embedding && first.inputs.is_some() && first.inputs == last.outputs
    }

    /// True while the LR is still ramping up (warm-up): the latest LR is the
    /// highest so far and at least twice the first.
    pub fn in_warmup(&self) -> bool {
        let Some(lr) = self.lr else { return false };
        let v = &lr.series.values;
        let (Some(first), Some(last)) = (
            v.iter().find(|x| x.is_finite()),
            v.iter().rev().find(|x| x.is_finite()),
        ) else {
            return false;
        };
        let peak = v
            .iter()
            .copied()
            .filter(|x| x.is_finite())
            .fold(f64::NEG_INFINITY, f64::max);
        *last >= peak && *last >= 2.0 * first && *first >= 0.0
    }

    /// Number of LR restarts: the LR rising ×2 or more after having fallen
    /// (cyclic / warm-restart schedules oscillate by design).
    pub fn lr_restarts(&self) -> usize {
        let Some(lr) = self.lr else { return 0 };
        let mut low = f64::INFINITY;
        let mut fell = false;
        let mut prev = f64::NAN;
        let mut restarts = 0;
        for &v in lr
            .series
            .values
            .iter()
            .filter(|v| v.is_finite() && **v > 0.0)
        {
            if prev.is_finite() && v < prev {
                fell = true;
            }
            low = low.min(v);
            if fell && v >= 2.0 * low {
                restarts += 1;
                fell = false;
                low = v;
            }
            prev = v;
        }
        restarts
    }

    /// Median of the first few finite training-loss values: the loss before
    /// learning. "Few" is 5 points, fewer for short (e.g. per-epoch) series so
    /// that the start and recent windows never overlap.
    pub fn loss_start(&self) -> Option<f64> {
        let l = self.train_loss?;
        head_median(&l.series.values, edge_len(l.series.len()))
    }

    /// Median of the recent training loss (last 10% of points, at least the
    /// start window's size).
    pub fn loss_recent(&self) -> Option<f64> {
        let l = self.train_loss?;
        let n = l.series.len();
        tail_median(&l.series.values, recent_len(n, edge_len(n)))
    }

    /// Whether the training loss ever was non-finite.
    pub fn loss_nonfinite(&self) -> bool {
        self.train_loss
            .is_some_and(|l| l.series.values.iter().any(|v| !v.is_finite()))
            || self
                .val_loss
                .is_some_and(|l| l.series.values.iter().any(|v| !v.is_finite()))
    }

    /// Whether training made the loss worse (or non-finite) overall: the
    /// recent loss is above the start window's, or 1.5× above the very first
    /// loss — the step-0 baseline, computed before any update, which a
    /// blow-up within the first steps cannot inflate the way it inflates
    /// the start window.
    pub fn loss_worsened(&self) -> bool {
        if self.loss_nonfinite() {
            return true;
        }
        let first = self
            .train_loss
            .and_then(|l| l.series.values.iter().copied().find(|v| v.is_finite()));
        match (self.loss_start(), self.loss_recent()) {
            (Some(a), Some(b)) => b > a || first.is_some_and(|f| f > 0.0 && b > 1.5 * f),
            _ => false,
        }
    }

    /// Median of the last `k` epoch-level values of a series.
    pub fn epoch_tail(&self, s: &Series, k: usize) -> Option<f64> {
        let e = self.epoch_level(s);
        let start = e.len().saturating_sub(k);
        median(&e[start..].iter().map(|p| p.1).collect::<Vec<_>>())
    }

    /// Number of missing (NaN) input cells reported by the dataset summaries.
    pub fn missing_cells(&self) -> u64 {
        self.view.datasets.iter().filter_map(|d| d.missing).sum()
    }

    /// Largest |feature mean| and feature std of the training inputs, if
    /// logged: inputs far from zero mean / unit scale are "not normalised".
    pub fn input_scale(&self) -> Option<(f64, f64)> {
        let d = self.view.dataset("train")?;
        let max_abs = |v: &Option<Vec<crate::record::Value>>| {
            v.as_ref().map(|v| {
                v.iter()
                    .map(|x| x.0.abs())
                    .filter(|x| x.is_finite())
                    .fold(0.0, f64::max)
            })
        };
        Some((
            max_abs(&d.feature_mean)?,
            max_abs(&d.feature_std).unwrap_or(0.0),
        ))
    }
}

/// Training loss over where it started (or the chance level, if higher)
/// from which the updates threw the weights away: a batch of a learning
/// model scores at most a few × the mean loss. Read by
/// [`Ctx::loss_spiked`] and by the exploding-gradients rules.
pub(crate) const LOSS_SPIKE_FACTOR: f64 = 4.0;

#[cfg(test)]
mod tests {
    use super::super::testutil::{curve, view};
    use super::*;

    #[test]
    fn layers_follow_natural_order_with_output_last() {
        let v = view(&[
            ("grad_norm/head", curve(3, 1, |_| 1.0)),
            ("grad_norm/fc10", curve(3, 1, |_| 1.0)),
            ("grad_norm/fc2", curve(3, 1, |_| 1.0)),
        ]);
        let ctx = Ctx::new(&v);
        let names: Vec<_> = ctx.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["fc2", "fc10", "head"]);
        assert!(ctx.layers[2].is_output);
    }

    #[test]
    fn epoch_level_takes_medians_per_epoch() {
        let mut v = view(&[(
            "train/loss",
            curve(
                100,
                1,
                |i| if i % 10 == 3 { 100.0 } else { (i / 10) as f64 },
            ),
        )]);
        v.scalars.insert(
            "epoch".into(),
            Series::from_points((1..=10).map(|e| (e * 10 - 1, e as f64))),
        );
        let ctx = Ctx::new(&v);
        let e = ctx.epoch_level(&v.scalars["train/loss"]);
        assert_eq!(e.len(), 10);
        assert_eq!(e[0], (9, 0.0));
        assert_eq!(e[9], (99, 9.0));
    }

    #[test]
    fn epoch_boundaries_from_other_tools_counters() {
        let ours = Series::from_points([(10, 1.0), (20, 2.0), (30, 3.0)]);
        assert_eq!(epoch_boundaries(&ours), [10, 20, 30]);
        // Lightning: the current epoch logged with every metric.
        let lightning = Series::from_points([(5, 0.0), (9, 0.0), (15, 1.0), (19, 1.0), (25, 2.0)]);
        assert_eq!(epoch_boundaries(&lightning), [9, 19, 25]);
        // HF Trainer: fractional epochs every logging step.
        let hf = Series::from_points((1..=30).map(|i| (i * 10, i as f64 / 10.0)));
        assert_eq!(epoch_boundaries(&hf), [90, 190, 290, 300]);
    }

    #[test]
    fn most_points_wins_for_losses() {
        let v = view(&[
            ("train_loss", curve(1, 100, |_| 0.5)),
            ("loss", curve(50, 2, |_| 1.0)),
        ]);
        assert_eq!(Ctx::new(&v).train_loss.unwrap().key, "loss");
    }

    #[test]
    fn warmup_and_restarts() {
        let v = view(&[("lr", curve(10, 1, |i| 1e-4 * (i + 1) as f64))]);
        assert!(Ctx::new(&v).in_warmup());
        let v = view(&[(
            "lr",
            curve(30, 1, |i| 1e-3 * (1.0 - (i % 10) as f64 / 10.0)),
        )]);
        let ctx = Ctx::new(&v);
        assert!(!ctx.in_warmup());
        assert_eq!(ctx.lr_restarts(), 2);
    }
}
