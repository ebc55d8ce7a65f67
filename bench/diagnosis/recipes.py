"""The recipes: which trainings are made, with which fault, and the labels a
good detector is judged against.

A recipe is (architecture, fault, spec); each is trained once per seed and
recorded in the three logging habits of ``runtrace.py``. Seeds and data sets
of the ``tune`` split are the ones the detectors may be tuned on; the
``heldout`` split uses other seeds and, for the numpy MLPs, other data sets
(breast cancer, a 6-class synthetic set), and is reported separately.

Labels (``expect`` / ``allow``, as the fixtures' ``labels.json``) were fixed
from the recipes before any detector was run on them. They depend on the
fault, on what the habit logs (a dead-ReLU verdict needs per-layer gradients
or activation statistics) and on a few *outcome facts* of the training that
the trainers measure on their internal state — whatever is logged — because
one injection gives different symptoms across seeds (research §5): the loss
became non-finite or ended ≥ 4× above the chance level (expected
only where the chance level is logged: the full habit); every weight gradient was exactly 0 for ≥ 90% of the late
half (a dead network); the loss peaked ≥ 1000× above the chance level; the
gradient norm grew ≥ 100× over its first value; the model ends poor
(normalised training accuracy < 0.6) or unfinished (< 0.9); the
train − validation accuracy gap. See README.md for the table.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

UNSTABLE = {"divergence", "exploding_gradients", "oscillating_loss", "dead_relu",
            "saturated_activations"}
STALL = {"slow_convergence", "underfitting"}

# (arch, fault, spec). Numpy MLP specs get their data set from the split's
# pool; others fix it.
MLP_SIM: List[Tuple[str, Dict[str, Any]]] = [
    ("healthy", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=12)),
    ("healthy", dict(opt="adam", lr=1e-3, epochs=15, batch=64)),
    ("healthy", dict(opt="adam", lr=2e-3, epochs=15, schedule="cosine", names="fc")),
    ("healthy", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=12, schedule="step", wd=1e-4)),
    ("healthy", dict(opt="adamw", lr=3e-3, wd=0.01, epochs=12, warmup=60, schedule="cosine",
                     names="net")),
    ("healthy", dict(opt="sgd", lr=0.02, momentum=0.9, act="tanh", epochs=12, names="fc")),
    ("healthy", dict(opt="adam", lr=1e-3, dropout=0.2, epochs=15, hidden=[128, 64])),
    ("healthy", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=12, act="gelu", batch=16,
                     clip=5.0)),
    ("healthy", dict(opt="adam", lr=5e-4, epochs=15, hidden=[32], names="fc")),
    ("healthy", dict(opt="sgd", lr=0.2, epochs=12, act="leaky_relu", batch=64)),
    ("healthy", dict(opt="adam", lr=1e-3, epochs=20, hidden=[64, 64, 64], wd=1e-4, names="fc")),
    ("healthy", dict(opt="sgd", lr=0.01, momentum=0.9, epochs=25, batch=64, names="net")),
    ("lr_high", dict(opt="sgd", lr=3.0, momentum=0.9, epochs=10)),
    ("lr_high", dict(opt="sgd", lr=1.0, momentum=0.9, epochs=10, names="fc")),
    ("lr_high", dict(opt="adam", lr=0.3, epochs=10)),
    ("no_zero_grad", dict(opt="sgd", lr=0.01, epochs=10, no_zero_grad=True)),
    ("no_zero_grad", dict(opt="adam", lr=1e-3, epochs=10, names="fc", no_zero_grad=True)),
    ("shuffled_labels", dict(opt="adam", lr=2e-3, epochs=30, hidden=[256, 256], shuffle_labels=True)),
    ("unnormalised", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=10, unnormalised=True)),
    ("unnormalised", dict(opt="sgd", lr=0.01, epochs=10, act="tanh", unnormalised=True,
                          names="fc")),
    ("double_softmax", dict(opt="adam", lr=1e-3, epochs=15, double_softmax=True)),
    ("frozen", dict(opt="adam", lr=1e-3, epochs=12, hidden=[16, 16], frozen=[0, 1])),
    ("wrong_params", dict(opt="adam", lr=1e-3, epochs=12, opt_layers=[2], names="fc")),
    ("deep_sigmoid", dict(opt="sgd", lr=0.1, epochs=10, act="sigmoid", hidden=[32] * 8)),
    ("heavy_dropout", dict(opt="adam", lr=1e-3, epochs=12, dropout=0.9,
                           hidden=[32, 32])),
    ("lr_tiny", dict(opt="sgd", lr=1e-5, epochs=10)),
    ("class_split_val", dict(opt="adam", lr=1e-3, epochs=12, class_split=True)),
    ("nan_inputs", dict(opt="adam", lr=1e-3, epochs=8, nan_inputs=0.02)),
    ("imbalance", dict(opt="adam", lr=1e-3, epochs=15, imbalance=8)),
    ("overfit_tiny", dict(opt="adam", lr=3e-3, epochs=150, n_train=60, hidden=[256, 256],
                          batch=16)),
    ("val_scale", dict(opt="adam", lr=1e-3, epochs=12, val_scale=4.0)),
    ("val_shift", dict(opt="adam", lr=1e-3, epochs=12, val_shift=1.5)),
    ("dead_bias", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=10, bias_init=-5.0)),
    ("explode_init", dict(opt="sgd", lr=0.01, momentum=0.9, epochs=10, init_scale=3.0,
                          hidden=[64] * 6)),
    ("lr_raise_mid", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=12, lr_raise=(0.5, 100.0))),
    ("corrupt_mid", dict(opt="adam", lr=1e-3, epochs=12, corrupt_at=0.6)),
    # Mislabelled data sets (train and validation): the model still learns
    # the true classes, and its validation probabilities disagree with the
    # wrong labels. Appended, so the recipes above keep their names.
    ("flipped_labels", dict(opt="adam", lr=1e-3, epochs=15, flip=0.10)),
    ("flipped_labels", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=12, flip=0.20, names="fc")),
    ("flipped_labels", dict(opt="adam", lr=2e-3, epochs=30, hidden=[256, 256], flip=0.25)),
]

RNN_SIM: List[Tuple[str, Dict[str, Any]]] = [
    ("healthy", dict(opt="adam", lr=3e-3, clip=1.0, epochs=12)),
    ("healthy", dict(opt="sgd", lr=0.02, momentum=0.9, clip=1.0, epochs=20)),
    ("healthy", dict(opt="adam", lr=2e-3, epochs=12, schedule="cosine")),
    ("healthy", dict(opt="adam", lr=1e-3, epochs=15, hidden=48)),
    ("lr_high", dict(opt="sgd", lr=3.0, momentum=0.9, epochs=10)),
    ("explode_init", dict(opt="sgd", lr=0.05, epochs=10, rec_scale=6.0)),
    ("lr_tiny", dict(opt="sgd", lr=1e-5, epochs=10)),
    ("no_zero_grad", dict(opt="sgd", lr=0.05, epochs=10, no_zero_grad=True)),
    ("shuffled_labels", dict(opt="adam", lr=3e-3, epochs=25, hidden=64, shuffle_labels=True)),
    ("wrong_params", dict(opt="adam", lr=3e-3, epochs=12, opt_fc_only=True)),
    ("nan_inputs", dict(opt="adam", lr=3e-3, epochs=8, nan_inputs=0.01)),
    ("lr_raise_mid", dict(opt="adam", lr=3e-3, epochs=12, lr_raise=(0.5, 300.0))),
]

TORCH: List[Tuple[str, str, Dict[str, Any]]] = [
    ("convnet", "healthy", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=6)),
    ("convnet", "healthy", dict(opt="adam", lr=2e-3, epochs=6, dropout=0.2)),
    ("convnet", "healthy", dict(opt="adam", lr=3e-3, epochs=6, schedule="cosine", act="tanh")),
    ("convnet", "lr_high", dict(opt="sgd", lr=2.0, momentum=0.9, epochs=6)),
    ("convnet", "explode_init", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=6, init_scale=15.0)),
    ("convnet", "double_softmax", dict(opt="adam", lr=2e-3, epochs=6, double_softmax=True)),
    ("convnet", "frozen", dict(opt="adam", lr=2e-3, epochs=6, frozen=["features.0", "features.2"])),
    ("convnet", "deep_sigmoid", dict(opt="sgd", lr=0.1, epochs=6, act="sigmoid", deep=4)),
    ("convnet", "nan_inputs", dict(opt="adam", lr=2e-3, epochs=4, nan_inputs=0.02)),
    ("rnn", "healthy", dict(cell="lstm", opt="adam", lr=3e-3, clip=1.0, epochs=8)),
    ("rnn", "healthy", dict(cell="gru", opt="adam", lr=3e-3, epochs=8)),
    ("rnn", "lr_high", dict(cell="lstm", opt="sgd", lr=30.0, epochs=8)),
    ("rnn", "no_zero_grad", dict(cell="gru", opt="sgd", lr=0.1, momentum=0.9, epochs=8,
                                  no_zero_grad=True)),
    ("rnn", "lr_tiny", dict(cell="lstm", opt="sgd", lr=1e-4, epochs=8)),
    ("rnn", "frozen", dict(cell="lstm", opt="adam", lr=3e-3, epochs=8, frozen=["rnn."])),
    ("transformer", "healthy", dict(opt="adam", lr=3e-3, warmup=30, schedule="cosine", epochs=6)),
    ("transformer", "healthy", dict(opt="adamw", lr=1e-3, wd=0.01, epochs=6, act="relu")),
    ("transformer", "healthy", dict(opt="adam", lr=2e-3, warmup=20, epochs=6, norm_first=True)),
    ("transformer", "adam_no_warmup", dict(opt="adam", lr=1.0, epochs=5)),
    ("transformer", "adam_no_warmup", dict(opt="adam", lr=0.1, epochs=5)),
    ("transformer", "lr_tiny", dict(opt="sgd", lr=1e-4, epochs=6)),
    ("transformer", "wrong_params", dict(opt="adam", lr=3e-3, epochs=6, opt_over=["head"])),
    ("mlp", "healthy", dict(opt="adam", lr=1e-3, epochs=10)),
    ("mlp", "healthy", dict(opt="sgd", lr=0.05, momentum=0.9, epochs=8, act="tanh")),
    ("mlp", "lr_high", dict(opt="sgd", lr=1.5, epochs=8)),
    ("mlp", "dead_bias", dict(opt="adam", lr=1e-3, epochs=8, bias_init=-5.0)),
    ("mlp", "flipped_labels", dict(opt="adam", lr=1e-3, epochs=10, flip=0.15)),
    ("convnet", "flipped_labels", dict(opt="adam", lr=2e-3, epochs=6, flip=0.20)),
]

SPLITS = {
    # seeds, numpy-MLP data sets
    "tune": ([0, 1], ["digits", "wine", "blobs4"]),
    "heldout": ([101, 102], ["digits", "cancer", "synth6"]),
}
#: Seed offset of the torch runs (one seed per split).
TORCH_SEEDS = {"tune": 0, "heldout": 103}
#: Faults that need ≥ 4 classes (a class split keeps half of them).
FAULTS_NEED_MANY_CLASSES = {"class_split_val", "imbalance"}
#: Faults judged on the validation split's predictions, which need ≥ 100
#: samples (wine's has 44).
FAULTS_NEED_MANY_SAMPLES = {"flipped_labels"}

# What ``label_errors`` documents (src/diagnostics/predictions.rs): it judges
# a split of ≥ MIN_SAMPLES samples whose model is ≥ MIN_CLEAN_ACCURACY
# accurate, and 10 % flipped labels reach its warning share (WARN_SHARE 6 %
# of confident suspects: "10 % flipped labels give ≈ 6–7 %").
LABEL_ERRORS_MIN_SAMPLES = 100
LABEL_ERRORS_MIN_ACCURACY = 0.8
LABEL_ERRORS_FLIP_RAISES = 0.10


def jobs(split: str, torch_runs: bool = True) -> List[Dict[str, Any]]:
    seeds, pool = SPLITS[split]
    out: List[Dict[str, Any]] = []
    for si, seed in enumerate(seeds):
        for ri, (fault, spec) in enumerate(MLP_SIM):
            ds = pool[(ri + si) % len(pool)]
            if fault in FAULTS_NEED_MANY_CLASSES and ds in ("cancer", "moons", "wine"):
                ds = pool[0]
            if fault in FAULTS_NEED_MANY_SAMPLES and ds == "wine":
                ds = pool[0]
            name = f"{split}-mlp-sim-{ri:02d}-{fault}-{ds}-s{seed}"
            out.append({"name": name, "arch": "mlp", "trainer": "sim-mlp", "fault": fault,
                        "spec": {**spec, "dataset": ds, "fault": fault}, "seed": seed})
        for ri, (fault, spec) in enumerate(RNN_SIM):
            name = f"{split}-rnn-sim-{ri:02d}-{fault}-s{seed}"
            out.append({"name": name, "arch": "rnn", "trainer": "sim-rnn", "fault": fault,
                        "spec": {**spec, "fault": fault}, "seed": seed})
    if torch_runs:
        seed = TORCH_SEEDS[split]
        for ri, (arch, fault, spec) in enumerate(TORCH):
            name = f"{split}-{arch}-torch-{ri:02d}-{fault}-s{seed}"
            out.append({"name": name, "arch": arch, "trainer": "torch", "fault": fault,
                        "spec": {**spec, "fault": fault}, "seed": seed})
    return out


# -- labels -------------------------------------------------------------------------


def _norm_acc(f: Dict[str, Any]) -> Optional[float]:
    a, c = f.get("train_acc_final"), f.get("chance_acc")
    if a is None or c is None or c >= 1:
        return None
    return (a - c) / (1 - c)


def label(fault: str, arch: str, habit: str, grads: Optional[str], f: Dict[str, Any],
          logged_growth: Optional[float] = None, logged_acc: bool = True
          ) -> Tuple[Set[str], Set[str]]:
    """(expect, allow) for one recording. ``grads``: what gradient signal
    the recording has — ``layers`` (per parameter or per layer), ``global``
    or ``None``; ``logged_growth``: the largest growth (peak over first
    value) of a gradient series the recording logged — gradients that grew
    between two logged checks and fell back are not in the recording;
    ``logged_acc``: whether the recording has accuracies."""
    exp: Set[str] = set()
    allow: Set[str] = set()
    per_layer = habit == "full" or grads == "layers"
    full = habit == "full"
    chance = f.get("chance_loss") or 1.0
    nan = f.get("nonfinite_step") is not None
    dead = bool(f.get("all_grads_zero_late"))
    peak = f.get("loss_peak") or 0.0
    blew_up = peak >= 1000 * chance
    na = _norm_acc(f)
    poor = na is not None and na < 0.6
    unfinished = na is not None and na < 0.9
    gap = (f.get("train_acc_final") or 0) - (f.get("val_acc_final") or 0)
    grew = (logged_growth or 0) >= 100
    # The validation loss ended ≥ 50% above its minimum (floored at 10% of
    # the chance level, below which a change is a few samples' worth).
    vmin, vfin = f.get("val_loss_min"), f.get("val_loss_final")
    val_rose = bool(vmin is not None and vfin is not None
                    and vfin - vmin >= 0.5 * max(vmin, 0.1 * chance))

    # Outcome facts, whatever the fault.
    # The loss ended ≥ 4× above the chance level: it went the wrong way and
    # stayed there.
    # ... and the validation loss (eval mode) is confidently wrong too: with
    # heavy dropout the train-mode loss alone can sit that high.
    stuck_high = (f.get("loss_late") or 0) >= 4 * chance and \
        (f.get("val_loss_final") is None or f["val_loss_final"] >= 2 * chance)
    if nan or blew_up:
        exp.add("divergence")
        allow |= UNSTABLE
    elif stuck_high:
        # Only the full habit logs what the chance level is (the model's
        # head, the class counts); without it, 4× above chance is not
        # visible in the recording.
        if full:
            exp.add("divergence")
        allow |= UNSTABLE
    if val_rose:
        allow.add("overfitting")
    if dead:
        allow |= {"dead_relu", "divergence", "exploding_gradients", "oscillating_loss"}
        if per_layer:
            exp.add("dead_relu")

    if fault == "healthy":
        pass
    elif fault in ("lr_high", "no_zero_grad", "explode_init", "lr_raise_mid", "adam_no_warmup"):
        allow |= UNSTABLE | {"underfitting"}
        if fault == "explode_init":
            allow |= STALL | {"vanishing_gradients"}
        if per_layer or grads == "global":
            if grew and (nan or dead or poor):
                exp.add("exploding_gradients")
        if fault == "explode_init" and per_layer and (f.get("loss_first") or 0) >= 100 * chance:
            exp.add("exploding_gradients")
    elif fault == "shuffled_labels":
        allow |= {"overfitting", "underfitting", "slow_convergence", "oscillating_loss"}
        if gap >= 0.2:
            exp.add("overfitting")
    elif fault == "unnormalised":
        allow |= UNSTABLE | STALL | {"vanishing_gradients"}
        if full and (f.get("true_sat") or 0) >= 0.5:
            exp.add("saturated_activations")
        if full and (f.get("true_dead") or 0) >= 0.5:
            exp.add("dead_relu")
    elif fault == "double_softmax":
        allow |= STALL | {"loss_activation_mismatch"}
        if full:
            exp.add("loss_activation_mismatch")
    elif fault == "frozen":
        allow |= STALL | {"unchanged_weights"}
        if full and unfinished:
            exp.add("unchanged_weights")
    elif fault == "wrong_params":
        allow |= STALL | {"unchanged_weights"}
        if full:
            exp.add("unchanged_weights")
    elif fault == "deep_sigmoid":
        allow |= STALL | {"vanishing_gradients", "saturated_activations"}
        if per_layer and poor:
            exp.add("vanishing_gradients")
    elif fault == "heavy_dropout":
        allow |= STALL
        # "Poor" needs an accuracy or the chance level (full habit) to be
        # visible: a loss of 5 alone could be a regression's.
        if poor and (logged_acc or full):
            exp.add("underfitting")
    elif fault == "lr_tiny":
        allow |= STALL
        first, late = f.get("loss_first"), f.get("loss_late")
        if first and late and late > 0.9 * first:
            exp.add("slow_convergence")
    elif fault == "class_split_val":
        allow |= {"overfitting", "distribution_shift"}
        if full:
            exp.add("distribution_shift")
    elif fault == "nan_inputs":
        allow |= {"missing_values"}
        if full:
            exp.add("missing_values")
    elif fault == "corrupt_mid":
        allow |= {"exploding_gradients"}
    elif fault == "imbalance":
        allow |= {"overfitting", "underfitting", "slow_convergence"}
        if full:
            exp.add("class_imbalance")
    elif fault == "overfit_tiny":
        allow |= {"overfitting"}
        vmin, vfin = f.get("val_loss_min"), f.get("val_loss_final")
        # The gap is only visible with accuracies; without them, the
        # validation loss must have risen.
        if (gap >= 0.1 and logged_acc) or val_rose:
            exp.add("overfitting")
    elif fault in ("val_scale", "val_shift"):
        allow |= {"overfitting", "distribution_shift"}
        if full:
            exp.add("distribution_shift")
    elif fault == "flipped_labels":
        # A model that memorises the wrong labels overfits; the noise slows
        # and limits the fit. Only the full habit sends the predictions the
        # label errors are seen in.
        allow |= {"overfitting", "oscillating_loss", "label_errors"} | STALL
        if full and (f.get("flip") or 0) >= LABEL_ERRORS_FLIP_RAISES \
                and (f.get("val_n") or 0) >= LABEL_ERRORS_MIN_SAMPLES \
                and (f.get("val_acc_clean") or 0) >= LABEL_ERRORS_MIN_ACCURACY:
            exp.add("label_errors")
    elif fault == "dead_bias":
        allow |= STALL | {"dead_relu", "unchanged_weights", "vanishing_gradients"}
        if full:
            exp.add("dead_relu")
    else:
        raise ValueError(fault)
    return exp, allow - exp
