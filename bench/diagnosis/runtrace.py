"""What one training run produced, whatever trained it, and how a script
with a given logging habit would have recorded it.

A trainer (numpy in ``sim.py``, PyTorch in ``torch_runs.py``) fills a
:class:`Trace` with everything it can measure: the per-step loss and LR, every
parameter's gradient norm (PyTorch names: ``0.weight``, ``rnn.weight_hh_l0``),
the global norm ``clip_grad_norm_`` returns, what ``trainlens.torch.watch``
measures every 10 steps (per weight layer: gradient and weight norms, update
ratio, activation statistics, dead/saturated unit shares; histograms every
200 steps), the model and dataset records, epoch-level evaluations, and the
*facts* of the run (did the loss go non-finite, were all gradients exactly 0,
how saturated the units really were...) that the labels are made from.

:func:`write` turns a trace into a recording in the record format for one of
three habits:

* ``losses``: ``train/loss`` every step, ``val/loss`` (and sometimes
  ``val/acc``, ``train/acc``, ``lr``) every epoch; nothing else;
* ``grads``: the same plus either ``grad_norm/<parameter name>`` for every
  parameter (``p.grad.norm()`` in a loop over ``named_parameters()``) or one
  global ``grad_norm`` (the value ``clip_grad_norm_`` returns);
* ``full``: everything ``trainlens.torch.watch`` logs, the model record and
  the dataset summaries, and for some faults (``sim.PREDICTING_FAULTS``) the
  validation split's ``predictions`` record at the end (for PyTorch runs the
  real client wrote it; see ``torch_runs.py``).
"""

from __future__ import annotations

import json
import math
import random
from typing import Any, Dict, List, Optional

HABITS = ("losses", "grads", "full")


def _v(x: float) -> Any:
    """A value in the record format: non-finite ones as strings."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    return float(f"{x:.7g}")


class Trace:
    def __init__(self, name: str, config: Dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.model: Optional[Dict[str, Any]] = None  # the watch's model record
        self.datasets: List[Dict[str, Any]] = []
        # per step
        self.loss: List[float] = []
        self.lr: List[float] = []
        self.global_grad: List[float] = []
        self.param_grads: Dict[str, List[float]] = {}  # every step, by parameter name
        # watch-style measurements: step -> {key: value}
        self.watch: Dict[int, Dict[str, float]] = {}
        self.hists: List[Dict[str, Any]] = []
        # epochs: dicts with step, train_loss, train_acc, val_loss, val_acc
        self.epochs: List[Dict[str, float]] = []
        self.facts: Dict[str, Any] = {}
        # Predictions records the script sends at the end (full habit only).
        self.predictions: List[Dict[str, Any]] = []
        # Recordings made by the real client (PyTorch runs), by habit.
        self.recorded: Dict[str, List[Dict[str, Any]]] = {}

    # -- recording helpers for trainers --------------------------------------
    def step(self, loss: float, lr: float, grads: Dict[str, float], global_norm: float) -> None:
        self.loss.append(float(loss))
        self.lr.append(float(lr))
        self.global_grad.append(float(global_norm))
        for k, v in grads.items():
            self.param_grads.setdefault(k, []).append(float(v))

    def measure(self, step: int, values: Dict[str, float]) -> None:
        self.watch.setdefault(step, {}).update(values)

    def hist(self, step: int, key: str, edges: List[float], counts: List[int], nonfinite: int) -> None:
        self.hists.append({"type": "histogram", "step": step, "key": key,
                           "edges": [_v(e) for e in edges], "counts": counts,
                           "nonfinite": nonfinite})

    @property
    def steps(self) -> int:
        return len(self.loss)


def _scalar(step: int, key: str, value: float) -> Dict[str, Any]:
    return {"type": "scalar", "step": step, "key": key, "value": _v(value)}


def write(trace: Trace, habit: str, seed: int) -> List[Dict[str, Any]]:
    """The recording of ``trace`` as a script with ``habit`` makes it. The
    ``seed`` picks the habit's variant (which optional curves, which
    gradient-norm style), reproducibly."""
    if habit in trace.recorded:
        return trace.recorded[habit]
    rng = random.Random(seed * 7919 + HABITS.index(habit))
    name = f"{trace.name}--{habit}"
    out: List[Dict[str, Any]] = [{"type": "run", "name": name, "project": "diagbench",
                                  "config": trace.config}]
    full = habit == "full"
    if full:
        if trace.model is not None:
            out.append({"type": "model", **trace.model})
        for d in trace.datasets:
            out.append({"type": "dataset", **d})
    with_acc = full or rng.random() < 0.5
    with_lr = full or rng.random() < 0.5
    keras = not full and rng.random() < 0.2
    loss_key, val_key = ("loss", "val_loss") if keras else ("train/loss", "val/loss")
    acc_key, val_acc_key = ("accuracy", "val_accuracy") if keras else ("train/acc", "val/acc")
    lr_key = "learning_rate" if keras else "lr"
    for i, l in enumerate(trace.loss):
        out.append(_scalar(i, loss_key, l))
        if with_lr:
            out.append(_scalar(i, lr_key, trace.lr[i]))
    for e, ep in enumerate(trace.epochs):
        s = int(ep["step"])
        out.append(_scalar(s, "epoch", e + 1))
        if "val_loss" in ep:
            out.append(_scalar(s, val_key, ep["val_loss"]))
        if with_acc:
            if "train_acc" in ep:
                out.append(_scalar(s, acc_key, ep["train_acc"]))
            if "val_acc" in ep:
                out.append(_scalar(s, val_acc_key, ep["val_acc"]))
    if habit == "grads":
        per_param = bool(trace.param_grads) and (rng.random() < 0.65 or not trace.global_grad)
        every = rng.choice([1, 1, 5, 10])
        if per_param:
            for k, vals in trace.param_grads.items():
                for i in range(0, len(vals), every):
                    out.append(_scalar(i, f"grad_norm/{k}", vals[i]))
        else:
            for i in range(0, len(trace.global_grad), every):
                out.append(_scalar(i, "grad_norm", trace.global_grad[i]))
    if full:
        for step in sorted(trace.watch):
            for k, v in sorted(trace.watch[step].items()):
                out.append(_scalar(step, k, v))
        out.extend(trace.hists)
        out.extend(trace.predictions)
    status = "failed" if trace.facts.get("crashed") else "finished"
    out.append({"type": "end", "status": status, "step": max(trace.steps - 1, 0)})
    return out


def dump(records: List[Dict[str, Any]], path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, allow_nan=False) + "\n")
