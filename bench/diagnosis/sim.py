"""Numpy trainers with real back-propagation: an MLP and an Elman RNN,
trained on small offline data sets, with the faults of ``recipes.py``
injected the way a training script makes them (a missing ``zero_grad``
accumulates gradients, a frozen layer gets no gradient, an optimizer over the
wrong parameters never updates the rest, ...). They fill a
:class:`trace.Trace` with what PyTorch and ``trainlens.torch.watch`` would
report, under PyTorch's own names.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from runtrace import Trace

# -- data ---------------------------------------------------------------------


def dataset(name: str, seed: int) -> Tuple[np.ndarray, np.ndarray, int]:
    """Features (raw, not standardised) and integer labels."""
    from sklearn import datasets as ds

    if name == "digits":
        d = ds.load_digits()
        return d.data.astype(np.float64), d.target, 10
    if name == "wine":
        d = ds.load_wine()
        return d.data.astype(np.float64), d.target, 3
    if name == "cancer":
        d = ds.load_breast_cancer()
        return d.data.astype(np.float64), d.target, 2
    if name.startswith("blobs"):
        k = int(name[5:] or 4)
        x, y = ds.make_blobs(n_samples=1200, centers=k, n_features=10, cluster_std=3.0,
                             random_state=seed)
        return x * 4.0 + 20.0, y, k
    if name.startswith("synth"):
        k = int(name[5:] or 6)
        x, y = ds.make_classification(n_samples=1500, n_features=24, n_informative=12,
                                      n_redundant=4, n_classes=k, n_clusters_per_class=1,
                                      class_sep=1.5, random_state=seed)
        return x * 10.0 + 5.0, y, k
    if name == "moons":
        x, y = ds.make_moons(n_samples=1200, noise=0.2, random_state=seed)
        x = np.hstack([x, np.random.default_rng(seed).normal(size=(len(x), 6))])
        return x * 3.0, y, 2
    raise ValueError(name)


def summary(x: np.ndarray, y: Optional[np.ndarray], split: str) -> Dict[str, Any]:
    """The dataset record ``trainlens.torch.dataset_summary`` makes."""
    missing = int(np.isnan(x).sum())
    mean = np.nanmean(x, axis=0)
    std = np.nanstd(x, axis=0)
    rec: Dict[str, Any] = {"split": split, "n": int(len(x)), "n_features": int(x.shape[1]),
                           "missing": missing,
                           "feature_mean": [float(f"{v:.6g}") for v in np.nan_to_num(mean)],
                           "feature_std": [float(f"{v:.6g}") for v in np.nan_to_num(std)]}
    if y is not None:
        vals, counts = np.unique(y, return_counts=True)
        rec["class_counts"] = {str(int(v)): int(c) for v, c in zip(vals, counts)}
    return rec


def histogram(t: np.ndarray) -> Tuple[List[float], List[int], int]:
    flat = t.reshape(-1)
    finite = flat[np.isfinite(flat)]
    nonfinite = int(flat.size - finite.size)
    if finite.size == 0:
        return [], [], nonfinite
    lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        hi = lo + max(abs(lo), 1.0) * 1e-6
    counts, edges = np.histogram(finite, bins=30, range=(lo, hi))
    return [float(e) for e in edges], [int(c) for c in counts], nonfinite


# -- activations ----------------------------------------------------------------


def act_fwd(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0.0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))
    if name == "gelu":
        return 0.5 * z * (1.0 + np.tanh(0.7978845608 * (z + 0.044715 * z ** 3)))
    if name == "leaky_relu":
        return np.where(z > 0, z, 0.01 * z)
    return z


def act_bwd(name: str, z: np.ndarray, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    if name == "relu":
        return g * (z > 0)
    if name == "tanh":
        return g * (1.0 - a * a)
    if name == "sigmoid":
        return g * a * (1.0 - a)
    if name == "gelu":
        t = np.tanh(0.7978845608 * (z + 0.044715 * z ** 3))
        dt = (1 - t * t) * 0.7978845608 * (1 + 3 * 0.044715 * z * z)
        return g * (0.5 * (1 + t) + 0.5 * z * dt)
    if name == "leaky_relu":
        return g * np.where(z > 0, 1.0, 0.01)
    return g


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - np.max(z, axis=1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=1, keepdims=True)


def ce(logits: np.ndarray, y: np.ndarray) -> Tuple[float, np.ndarray]:
    """Mean cross-entropy from logits and its gradient."""
    with np.errstate(all="ignore"):
        p = softmax(logits)
        n = len(y)
        loss = -np.mean(np.log(np.clip(p[np.arange(n), y], 1e-300, None)))
        if not np.all(np.isfinite(logits)):
            loss = float("nan")
        g = p.copy()
        g[np.arange(n), y] -= 1.0
    return float(loss), g / n


# -- optimizers ----------------------------------------------------------------


class Optim:
    def __init__(self, kind: str, lr: float, momentum: float = 0.0, wd: float = 0.0,
                 betas=(0.9, 0.999)) -> None:
        self.kind, self.lr, self.momentum, self.wd, self.betas = kind, lr, momentum, wd, betas
        self.state: Dict[str, Any] = {}
        self.t = 0

    def step(self, params: Dict[str, np.ndarray], grads: Dict[str, np.ndarray],
             names: List[str], lr: float) -> None:
        self.t += 1
        with np.errstate(all="ignore"):
            for n in names:
                p, g = params[n], grads.get(n)
                if g is None:
                    continue
                if self.kind in ("sgd", "adam") and self.wd:
                    g = g + self.wd * p
                if self.kind == "sgd":
                    if self.momentum:
                        buf = self.state.get(n)
                        buf = g.copy() if buf is None else self.momentum * buf + g
                        self.state[n] = buf
                        g = buf
                    p -= lr * g
                else:
                    b1, b2 = self.betas
                    m, v = self.state.get(n, (np.zeros_like(p), np.zeros_like(p)))
                    m = b1 * m + (1 - b1) * g
                    v = b2 * v + (1 - b2) * g * g
                    self.state[n] = (m, v)
                    mh = m / (1 - b1 ** self.t)
                    vh = v / (1 - b2 ** self.t)
                    if self.kind == "adamw" and self.wd:
                        p -= lr * self.wd * p
                    p -= lr * mh / (np.sqrt(vh) + 1e-8)


def schedule(kind: str, base: float, step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    if kind == "cosine":
        t = (step - warmup) / max(1, total - warmup)
        return base * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))
    if kind == "step":
        return base * (0.1 ** (step // max(1, total // 3)))
    return base


# -- the MLP --------------------------------------------------------------------


def module_names(n_layers: int, style: str, dropout: float) -> List[str]:
    """Weight-layer names as PyTorch gives them: ``nn.Sequential`` indices
    (Linear, activation, [Dropout], Linear, ...) or named attributes."""
    if style == "seq":
        names, i = [], 0
        for k in range(n_layers):
            names.append(str(i))
            i += 1 if k == n_layers - 1 else (3 if dropout else 2)
        return names
    if style == "net":
        return [f"net.{n}" for n in module_names(n_layers, "seq", dropout)]
    return [f"fc{k + 1}" for k in range(n_layers - 1)] + ["head" if style == "fc" else "out"]


def prepare(spec: Dict[str, Any], seed: int):
    """Train/val split with the data faults applied; returns x, y, xv, yv, k."""
    rng = np.random.default_rng(seed)
    x, y, k = dataset(spec["dataset"], seed)
    idx = rng.permutation(len(x))
    x, y = x[idx], y[idx]
    nval = len(x) // 4
    xv, yv, xt, yt = x[:nval], y[:nval], x[nval:], y[nval:]
    if spec.get("class_split"):
        # Validation from classes the training split never has.
        half = max(1, k // 2)
        xt, yt = xt[yt < half], yt[yt < half]
        xv, yv = xv[yv >= half], yv[yv >= half]
    if spec.get("imbalance"):
        keep = np.ones(len(yt), bool)
        major = 0
        for c in range(k):
            if c != major:
                ids = np.where(yt == c)[0]
                keep[ids[spec["imbalance"]:]] = False
        xt, yt = xt[keep], yt[keep]
    if spec.get("n_train"):
        xt, yt = xt[: spec["n_train"]], yt[: spec["n_train"]]
    if not spec.get("unnormalised"):
        mu, sd = xt.mean(0), xt.std(0)
        sd[sd == 0] = 1.0
        xt = (xt - mu) / sd
        xv = (xv - mu) / sd
    if spec.get("val_shift"):
        xv = xv + spec["val_shift"] * xt.std(0)
    if spec.get("val_scale"):
        mu = xt.mean(0)
        xv = mu + (xv - mu) * spec["val_scale"]
    if spec.get("shuffle_labels"):
        yt = rng.permutation(yt)
    if spec.get("flip"):
        # A mislabelled data set: a share of the training and validation
        # labels replaced by another class at random (its own generator, so
        # the rest of the data is the clean run's).
        frng = np.random.default_rng(seed + 7_000_003)
        yt, yv = flip_labels(yt, k, spec["flip"], frng), flip_labels(yv, k, spec["flip"], frng)
    if spec.get("nan_inputs"):
        mask = rng.random(xt.shape) < spec["nan_inputs"]
        xt = xt.copy()
        xt[mask] = np.nan
    return xt, yt, xv, yv, k


def flip_labels(y: np.ndarray, k: int, share: float, rng: Any) -> np.ndarray:
    """``y`` with ``share`` of its labels (chosen at random) replaced by
    another class, uniformly among the other ``k - 1``."""
    y = y.copy()
    ids = rng.choice(len(y), size=int(round(share * len(y))), replace=False)
    y[ids] = (y[ids] + rng.integers(1, k, size=len(ids))) % k
    return y


#: Faults whose ``full`` recordings end with the validation split's
#: ``predictions`` record (``run.log_predictions``): the mislabelled runs, and
#: the healthy ones so that ``label_errors`` is tried on good models too.
PREDICTING_FAULTS = ("healthy", "flipped_labels")


def prediction_facts(spec: Dict[str, Any], seed: int, yv: np.ndarray, probs: np.ndarray
                     ) -> Dict[str, Any]:
    """Facts of a mislabelled run for the labels: the flipped share, the
    validation split's size, and how accurate the model ends on the true
    (unflipped) validation labels."""
    true = prepare({**spec, "flip": 0}, seed)[3]
    with np.errstate(all="ignore"):
        clean = float(np.mean(np.argmax(probs, 1) == true))
    return {"flip": float(spec["flip"]), "val_n": int(len(yv)),
            "flipped_val": float(np.mean(true != yv)), "val_acc_clean": clean}


def predictions_record(split: str, labels: np.ndarray, probs: np.ndarray, step: int
                       ) -> Dict[str, Any]:
    """The record ``trainlens.records.predictions(split, labels, probs, step)``
    makes (every class's probability; no ids)."""
    probs = np.nan_to_num(np.asarray(probs, dtype=np.float64), nan=0.0).clip(0.0, 1.0)
    return {"type": "predictions", "step": int(step), "split": split,
            "labels": [int(v) for v in labels],
            "probs": [[float(f"{v:.7g}") for v in row] for row in probs]}


def _gnorm(g: Optional[np.ndarray]) -> float:
    if g is None:
        return float("nan")
    with np.errstate(all="ignore"):
        return float(np.sqrt(np.sum(g.astype(np.float64) ** 2)))


class _Stepper:
    """What both trainers do with a step's gradients, as a script does:
    clip by the global norm, step the optimizer, and count what the labels
    need (late steps whose weight gradients are all exactly 0, the first
    non-finite loss)."""

    def __init__(self, tr: Trace, opt: Any, opt_names: Any, clip: Any, total: int,
                 pnames: List[str], weights: List[str]):
        self.tr, self.opt, self.opt_names, self.clip = tr, opt, opt_names, clip
        self.total, self.pnames, self.weights = total, pnames, weights
        self.dead_steps = 0
        self.nonfinite_step: Optional[int] = None

    def step(self, step: int, loss: float, lr: float, params: Dict[str, np.ndarray],
             grads: Dict[str, np.ndarray], norms: Dict[str, float]):
        """Applies `grads`; returns them as applied (clipped) and, every 10th
        step, the weights before the update (else None)."""
        with np.errstate(all="ignore"):
            gnorm = float(np.sqrt(sum(v * v for v in norms.values())))
        if self.clip and np.isfinite(gnorm) and gnorm > self.clip:
            grads = {p: gg * (self.clip / gnorm) for p, gg in grads.items()}
        wg = [norms[p] for p in self.weights if p in norms]
        if wg and all(v == 0.0 for v in wg) and step >= self.total // 2:
            self.dead_steps += 1
        before = {p: params[p].copy() for p in self.pnames} if step % 10 == 0 else None
        self.opt.step(params, grads, self.opt_names, lr)
        if not np.isfinite(loss) and self.nonfinite_step is None:
            self.nonfinite_step = step
        self.tr.step(loss, lr, norms, gnorm)
        return grads, before

    def facts(self, yt: np.ndarray, k: int, onset: Optional[int],
              true_dead: Optional[List[float]], true_sat: List[float]) -> Dict[str, Any]:
        """The facts the labels read, from the training labels `yt` of `k`
        classes, the fault's true onset and the late dead/saturated shares
        (`true_dead` None: the trainer has no ReLU)."""
        counts = np.bincount(yt, minlength=k)
        prior = counts / counts.sum()
        return {
            "classes": k, "chance_loss": float(-sum(p * math.log(p) for p in prior if p > 0)),
            "chance_acc": float(prior.max()), "nonfinite_step": self.nonfinite_step,
            "dead_steps_late": self.dead_steps, "late_steps": self.total - self.total // 2,
            "true_dead": float(np.median(true_dead)) if true_dead else None,
            "true_sat": float(np.median(true_sat)) if true_sat else None,
            "steps": self.total, "onset": onset,
        }


def train_mlp(name: str, spec: Dict[str, Any], seed: int) -> Trace:
    rng = np.random.default_rng(seed + 17)
    xt, yt, xv, yv, k = prepare(spec, seed)
    k_out = k
    hidden: List[int] = spec.get("hidden", [64, 64])
    act: str = spec.get("act", "relu")
    dropout: float = spec.get("dropout", 0.0)
    sizes = [xt.shape[1]] + hidden + [k_out]
    nl = len(sizes) - 1
    mods = module_names(nl, spec.get("names", "seq"), dropout)
    params: Dict[str, np.ndarray] = {}
    for i in range(nl):
        fan_in = sizes[i]
        gain = math.sqrt(2.0) if act in ("relu", "leaky_relu", "gelu") else 1.0
        std = gain / math.sqrt(fan_in) * spec.get("init_scale", 1.0)
        if i == nl - 1:
            std = 1.0 / math.sqrt(fan_in) * spec.get("head_init_scale", spec.get("init_scale", 1.0))
        params[f"{mods[i]}.weight"] = rng.normal(0, std, (sizes[i], sizes[i + 1]))
        params[f"{mods[i]}.bias"] = np.full(sizes[i + 1], spec.get("bias_init", 0.0) if i < nl - 1 else 0.0)
    pnames = list(params)
    frozen = set(spec.get("frozen", []))  # layer indices with requires_grad=False
    trainable = [n for n in pnames if int(pnames.index(n) // 2) not in frozen]
    opt_layers = spec.get("opt_layers")  # optimizer built over these layers only
    opt_names = trainable if opt_layers is None else [
        n for n in trainable if pnames.index(n) // 2 in opt_layers]
    opt = Optim(spec.get("opt", "sgd"), spec["lr"], spec.get("momentum", 0.0),
                spec.get("wd", 0.0))
    epochs, batch = spec.get("epochs", 20), spec.get("batch", 32)
    spe = max(1, math.ceil(len(xt) / batch))
    total = epochs * spe
    config = {k2: v for k2, v in spec.items() if k2 not in ("fault",)}
    config.update({"seed": seed, "epochs": epochs, "batch_size": batch})
    tr = Trace(name, config)
    layers_rec = []
    for i in range(nl):
        w = params[f"{mods[i]}.weight"]
        layers_rec.append({"name": mods[i], "type": "Linear", "in": int(w.shape[0]),
                           "out": int(w.shape[1]), "params": int(w.size + w.shape[1]),
                           "activation": (act if i < nl - 1 else
                                          ("softmax" if spec.get("double_softmax") else "none")),
                           "trainable": i not in frozen})
    optrec = {"name": spec.get("opt", "sgd"), "lr": spec["lr"]}
    if spec.get("opt", "sgd") == "sgd":
        optrec["momentum"] = spec.get("momentum", 0.0)
    else:
        optrec["momentum"] = 0.9
    optrec["weight_decay"] = spec.get("wd", 0.0)
    tr.model = {"layers": layers_rec, "total_params": int(sum(p.size for p in params.values())),
                "loss": "cross_entropy", "optimizer": optrec}
    tr.datasets = [summary(xt, yt, "train"), summary(xv, yv, "val")]
    grads_acc: Dict[str, np.ndarray] = {}
    lr_raise = spec.get("lr_raise")  # (fraction of the run, factor)
    corrupt = spec.get("corrupt_at")  # fraction of the run from which inputs are NaN
    raise_step = int(lr_raise[0] * total) if lr_raise else None
    corrupt_step = int(corrupt * total) if corrupt else None
    double_softmax = spec.get("double_softmax", False)
    clip = spec.get("clip")
    step = 0
    stepper = _Stepper(tr, opt, opt_names, clip, total, pnames, [f"{m}.weight" for m in mods])
    true_dead: List[float] = []
    true_sat: List[float] = []

    def forward(x, train):
        zs, as_, masks = [], [x], []
        a = x
        with np.errstate(all="ignore"):
            for i in range(nl):
                z = a @ params[f"{mods[i]}.weight"] + params[f"{mods[i]}.bias"]
                zs.append(z)
                if i < nl - 1:
                    a = act_fwd(act, z)
                    m = None
                    if train and dropout:
                        m = (rng.random(a.shape) >= dropout) / (1 - dropout)
                    masks.append(m)
                    as_.append(a if m is None else a * m)
                    a = as_[-1]
                else:
                    a = z
        return zs, as_, masks, a

    def out_loss(logits, y):
        if double_softmax:
            p = softmax(logits)
            loss, g = ce(p, y)
            # back through the softmax
            with np.errstate(all="ignore"):
                g = p * (g - np.sum(g * p, axis=1, keepdims=True))
            return loss, g, p
        loss, g = ce(logits, y)
        return loss, g, logits

    for ep in range(epochs):
        order = rng.permutation(len(xt))
        correct = seen = 0
        for b in range(spe):
            ids = order[b * batch:(b + 1) * batch]
            x, y = xt[ids], yt[ids]
            if corrupt_step is not None and step >= corrupt_step:
                x = x.copy()
                x[:, : max(1, x.shape[1] // 8)] = np.nan
            lr = schedule(spec.get("schedule", "const"), spec["lr"], step, total,
                          spec.get("warmup", 0))
            if raise_step is not None and step >= raise_step:
                lr *= lr_raise[1]
            zs, as_, masks, logits = forward(x, True)
            loss, g, outp = out_loss(logits, y)
            with np.errstate(all="ignore"):
                correct += int(np.sum(np.argmax(outp, 1) == y))
            seen += len(y)
            grads: Dict[str, np.ndarray] = {}
            with np.errstate(all="ignore"):
                for i in reversed(range(nl)):
                    a_in = as_[i]
                    if i not in frozen:
                        grads[f"{mods[i]}.weight"] = a_in.T @ g
                        grads[f"{mods[i]}.bias"] = g.sum(0)
                    if i > 0:
                        g = g @ params[f"{mods[i]}.weight"].T
                        if masks[i - 1] is not None:
                            g = g * masks[i - 1]
                        g = act_bwd(act, zs[i - 1], act_fwd(act, zs[i - 1]), g)
            # p.grad: accumulated when zero_grad is missing.
            if spec.get("no_zero_grad"):
                for n2, gg in grads.items():
                    grads_acc[n2] = grads_acc.get(n2, 0) + gg
                pgrad = dict(grads_acc)
            else:
                pgrad = grads
            norms = {n2: _gnorm(pgrad.get(n2)) for n2 in pnames if n2 in pgrad}
            pgrad, before = stepper.step(step, loss, lr, params, pgrad, norms)
            if before is not None:
                vals: Dict[str, float] = {}
                for i, m in enumerate(mods):
                    wn = "%s.weight" % m
                    w0 = before[wn]
                    with np.errstate(all="ignore"):
                        n0 = float(np.linalg.norm(w0))
                        vals[f"weight_norm/{m}"] = n0
                        vals[f"update_ratio/{m}"] = float(np.linalg.norm(params[wn] - w0)) / max(n0, 1e-12)
                    if wn in pgrad:
                        vals[f"grad_norm/{m}"] = norms[wn]
                    if i < nl - 1:
                        a = act_fwd(act, zs[i])
                        with np.errstate(all="ignore"):
                            vals[f"act_mean/{m}"] = float(np.mean(a))
                            vals[f"act_std/{m}"] = float(np.std(a, ddof=1))
                            if act in ("relu", "leaky_relu"):
                                d = float(np.mean(np.max(np.abs(a), axis=0) == 0))
                                vals[f"dead_frac/{m}"] = d
                                if step >= total // 2:
                                    true_dead.append(d)
                            elif act in ("sigmoid", "tanh"):
                                s = float(np.mean((a < 0.01) | (a > 0.99))) if act == "sigmoid" \
                                    else float(np.mean(np.abs(a) > 0.99))
                                vals[f"sat_frac/{m}"] = s
                                if step >= total // 2:
                                    true_sat.append(s)
                    else:
                        o = outp
                        with np.errstate(all="ignore"):
                            vals[f"act_mean/{m}"] = float(np.mean(o))
                            vals[f"act_std/{m}"] = float(np.std(o, ddof=1))
                tr.measure(step, vals)
                if step % 200 == 0:
                    for i, m in enumerate(mods):
                        tr.hist(step, f"weights/{m}", *histogram(before[f"{m}.weight"]))
                        if f"{m}.weight" in pgrad:
                            tr.hist(step, f"grads/{m}", *histogram(pgrad[f"{m}.weight"]))
                        a = act_fwd(act, zs[i]) if i < nl - 1 else outp
                        tr.hist(step, f"activations/{m}", *histogram(a))
            step += 1
        # epoch evaluation
        _, _, _, lv = forward(xv, False)
        vl, _, vout = out_loss(lv, yv)
        with np.errstate(all="ignore"):
            va = float(np.mean(np.argmax(vout, 1) == yv))
        tr.epochs.append({"step": step - 1, "train_acc": correct / max(seen, 1),
                          "val_loss": vl, "val_acc": va})
    if spec.get("fault") in PREDICTING_FAULTS:
        # The script's last evaluation, sent as run.log_predictions does.
        with np.errstate(all="ignore"):
            probs = vout if double_softmax else softmax(lv)
        tr.predictions.append(predictions_record("val", yv, probs, step - 1))
        if spec.get("flip"):
            tr.facts.update(prediction_facts(spec, seed, yv, probs))
    onset = raise_step if raise_step is not None else corrupt_step
    tr.facts.update(stepper.facts(yt, k, onset, true_dead, true_sat))
    finish_facts(tr)
    return tr


def finish_facts(tr: Trace) -> None:
    """Outcome facts every trainer shares, from the trace."""
    loss = np.array(tr.loss, dtype=np.float64)
    finite = loss[np.isfinite(loss)]
    f = tr.facts
    f["loss_first"] = float(finite[0]) if finite.size else None
    f["loss_peak"] = float(finite.max()) if finite.size else None
    n = len(loss)
    late = loss[n - max(1, n // 10):]
    late = late[np.isfinite(late)]
    f["loss_late"] = float(np.median(late)) if late.size else None
    eps = tr.epochs
    f["train_acc_final"] = float(np.median([e["train_acc"] for e in eps[-3:]])) if eps else None
    f["val_acc_final"] = float(np.median([e["val_acc"] for e in eps[-3:]])) if eps else None
    f["val_acc_best"] = float(max(e["val_acc"] for e in eps)) if eps else None
    vls = [e["val_loss"] for e in eps if math.isfinite(e["val_loss"])]
    f["val_loss_min"] = float(min(vls)) if vls else None
    f["val_loss_final"] = float(np.median(vls[-3:])) if vls else None
    g = [v for v in tr.global_grad if math.isfinite(v)]
    f["all_grads_zero_late"] = bool(f.get("late_steps")) and f.get("dead_steps_late", 0) >= 0.9 * f["late_steps"]
    f["grad_first"] = g[0] if g else None
    f["grad_peak"] = max(g) if g else None


# -- the Elman RNN ----------------------------------------------------------------


def seq_data(seed: int, n: int = 1200, t: int = 15, d: int = 4, k: int = 4):
    """Sequences whose class is the input dimension with the largest sum:
    the model has to integrate over time."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (n, t, d))
    y = np.argmax(x.sum(1) + rng.normal(0, 0.5, (n, d)), axis=1)
    return x, y, k


def split_seq(x: np.ndarray, y: np.ndarray, spec: Dict[str, Any], rng: Any):
    """The sequence task's training and validation splits (a quarter), with
    the recipe's data faults: un-normalised inputs, shuffled training labels,
    NaN cells in the training inputs. Returns ``xt, yt, xv, yv``."""
    if spec.get("unnormalised"):
        x = x * 30.0 + 10.0
    nval = len(x) // 4
    xv, yv, xt, yt = x[:nval], y[:nval], x[nval:], y[nval:]
    if spec.get("shuffle_labels"):
        yt = rng.permutation(yt)
    if spec.get("nan_inputs"):
        xt = xt.copy()
        xt[rng.random(xt.shape) < spec["nan_inputs"]] = np.nan
    return xt, yt, xv, yv


def train_rnn(name: str, spec: Dict[str, Any], seed: int) -> Trace:
    """``nn.RNN(d, h, batch_first=True)`` + ``nn.Linear(h, k)`` on the last
    hidden state, back-propagated through time."""
    rng = np.random.default_rng(seed + 5)
    x, y, k = seq_data(seed)
    xt, yt, xv, yv = split_seq(x, y, spec, rng)
    n, t, d = xt.shape
    h = spec.get("hidden", 32)
    s = 1.0 / math.sqrt(h)
    params = {
        "rnn.weight_ih_l0": rng.uniform(-s, s, (h, d)),
        "rnn.weight_hh_l0": rng.uniform(-s, s, (h, h)) * spec.get("rec_scale", 1.0),
        "rnn.bias_ih_l0": rng.uniform(-s, s, h),
        "rnn.bias_hh_l0": rng.uniform(-s, s, h),
        "fc.weight": rng.uniform(-s, s, (k, h)),
        "fc.bias": rng.uniform(-s, s, k),
    }
    pnames = list(params)
    frozen_rnn = spec.get("frozen_rnn", False)
    trainable = [p for p in pnames if not (frozen_rnn and p.startswith("rnn."))]
    opt_names = [p for p in trainable if p.startswith("fc.")] if spec.get("opt_fc_only") else trainable
    opt = Optim(spec.get("opt", "sgd"), spec["lr"], spec.get("momentum", 0.0), spec.get("wd", 0.0))
    epochs, batch = spec.get("epochs", 15), spec.get("batch", 32)
    spe = math.ceil(n / batch)
    total = epochs * spe
    config = dict(spec)
    config.update({"seed": seed, "epochs": epochs, "batch_size": batch, "model": "rnn"})
    tr = Trace(name, config)
    tr.model = {"layers": [
        {"name": "rnn", "type": "RNN", "in": d, "out": h,
         "params": int(sum(params[p].size for p in pnames if p.startswith("rnn."))),
         "activation": "none", "trainable": not frozen_rnn},
        {"name": "fc", "type": "Linear", "in": h, "out": k, "params": h * k + k,
         "activation": "none", "trainable": True}],
        "total_params": int(sum(p.size for p in params.values())), "loss": "cross_entropy",
        "optimizer": {"name": spec.get("opt", "sgd"), "lr": spec["lr"],
                      "momentum": spec.get("momentum", 0.0 if spec.get("opt", "sgd") == "sgd" else 0.9),
                      "weight_decay": spec.get("wd", 0.0)}}
    tr.datasets = [summary(xt.reshape(len(xt), -1), yt, "train"),
                   summary(xv.reshape(len(xv), -1), yv, "val")]
    lr_raise = spec.get("lr_raise")
    raise_step = int(lr_raise[0] * total) if lr_raise else None
    clip = spec.get("clip")
    acc: Dict[str, np.ndarray] = {}
    step = 0
    stepper = _Stepper(tr, opt, opt_names, clip, total, pnames,
                       ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "fc.weight"])
    true_sat: List[float] = []

    def forward(xb):
        hs = [np.zeros((len(xb), h))]
        with np.errstate(all="ignore"):
            for i in range(t):
                hs.append(np.tanh(xb[:, i] @ params["rnn.weight_ih_l0"].T + params["rnn.bias_ih_l0"]
                                  + hs[-1] @ params["rnn.weight_hh_l0"].T + params["rnn.bias_hh_l0"]))
            logits = hs[-1] @ params["fc.weight"].T + params["fc.bias"]
        return hs, logits

    for ep in range(epochs):
        order = rng.permutation(n)
        correct = seen = 0
        for b in range(spe):
            ids = order[b * batch:(b + 1) * batch]
            xb, yb = xt[ids], yt[ids]
            lr = schedule(spec.get("schedule", "const"), spec["lr"], step, total, spec.get("warmup", 0))
            if raise_step is not None and step >= raise_step:
                lr *= lr_raise[1]
            hs, logits = forward(xb)
            loss, g = ce(logits, yb)
            with np.errstate(all="ignore"):
                correct += int(np.sum(np.argmax(logits, 1) == yb))
            seen += len(yb)
            grads = {p: np.zeros_like(params[p]) for p in pnames}
            with np.errstate(all="ignore"):
                grads["fc.weight"] = g.T @ hs[-1]
                grads["fc.bias"] = g.sum(0)
                dh = g @ params["fc.weight"]
                for i in reversed(range(t)):
                    dz = dh * (1 - hs[i + 1] ** 2)
                    grads["rnn.weight_ih_l0"] += dz.T @ xb[:, i]
                    grads["rnn.weight_hh_l0"] += dz.T @ hs[i]
                    grads["rnn.bias_ih_l0"] += dz.sum(0)
                    grads["rnn.bias_hh_l0"] += dz.sum(0)
                    dh = dz @ params["rnn.weight_hh_l0"]
            grads = {p: gg for p, gg in grads.items() if p in trainable}
            if spec.get("no_zero_grad"):
                for p, gg in grads.items():
                    acc[p] = acc.get(p, 0) + gg
                grads = dict(acc)
            norms = {p: _gnorm(gg) for p, gg in grads.items()}
            grads, before = stepper.step(step, loss, lr, params, grads, norms)
            if before is not None:
                vals: Dict[str, float] = {}
                for p in ("rnn.weight_ih_l0", "rnn.weight_hh_l0", "fc.weight"):
                    layer = "fc" if p == "fc.weight" else p
                    with np.errstate(all="ignore"):
                        n0 = float(np.linalg.norm(before[p]))
                        vals[f"weight_norm/{layer}"] = n0
                        vals[f"update_ratio/{layer}"] = float(np.linalg.norm(params[p] - before[p])) / max(n0, 1e-12)
                    if p in norms:
                        vals[f"grad_norm/{layer}"] = norms[p]
                with np.errstate(all="ignore"):
                    out_seq = np.stack(hs[1:], 1)
                    vals["act_mean/rnn"] = float(np.mean(out_seq))
                    vals["act_std/rnn"] = float(np.std(out_seq, ddof=1))
                    vals["act_mean/fc"] = float(np.mean(logits))
                    vals["act_std/fc"] = float(np.std(logits, ddof=1))
                    if step >= total // 2:
                        true_sat.append(float(np.mean(np.abs(out_seq) > 0.99)))
                tr.measure(step, vals)
            step += 1
        _, lv = forward(xv)
        vl, _ = ce(lv, yv)
        with np.errstate(all="ignore"):
            va = float(np.mean(np.argmax(lv, 1) == yv))
        tr.epochs.append({"step": step - 1, "train_acc": correct / max(seen, 1), "val_loss": vl,
                          "val_acc": va})
    tr.facts.update(stepper.facts(yt, k, raise_step, None, true_sat))
    finish_facts(tr)
    return tr
