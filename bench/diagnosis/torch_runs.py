"""Real PyTorch trainers: an MLP and a small convnet on the digits images,
an LSTM or GRU sequence classifier, and a small transformer language model
on synthetic text. Tiny sizes, CPU, one thread, fixed seeds.

Each training is recorded three ways at once: the ``full`` habit by the real
client (``trainlens.init(mode="offline")`` + ``trainlens.torch.watch`` +
``run.log_dataset``, and for the digits trainers of ``sim.PREDICTING_FAULTS``
``run.log_predictions`` of the validation split at the end), the other two from the same training by the script
itself (the loss, ``p.grad.norm()`` of every parameter, the norm
``clip_grad_norm_`` returns) into a :class:`runtrace.Trace`.
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List

import numpy as np

from runtrace import Trace
import sim

_CLIENT = os.path.join(os.path.dirname(__file__), "..", "..", "clients", "python")
sys.path.insert(0, os.path.abspath(_CLIENT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import trainlens  # noqa: E402
import trainlens.torch as tlt  # noqa: E402

torch.set_num_threads(1)


# -- data --------------------------------------------------------------------


def digits_images(seed: int, spec: Dict[str, Any]):
    xt, yt, xv, yv, k = sim.prepare({**spec, "dataset": "digits"}, seed)
    shape = lambda a: torch.tensor(a, dtype=torch.float32).reshape(-1, 1, 8, 8)  # noqa: E731
    return shape(xt), torch.tensor(yt), shape(xv), torch.tensor(yv), k, (xt, yt, xv, yv)


def seq_data(seed: int, spec: Dict[str, Any]):
    x, y, k = sim.seq_data(seed)
    xt, yt, xv, yv = sim.split_seq(x, y, spec, np.random.default_rng(seed + 3))
    f = lambda a: torch.tensor(a, dtype=torch.float32)  # noqa: E731
    flat = (xt.reshape(len(xt), -1), yt, xv.reshape(len(xv), -1), yv)
    return f(xt), torch.tensor(yt), f(xv), torch.tensor(yv), k, flat


def markov_text(seed: int, vocab: int = 16, n: int = 40000):
    """Text from a sparse random Markov chain (each symbol has a few likely
    successors): learnable, with an entropy well below ln(vocab)."""
    rng = np.random.default_rng(seed)
    trans = np.full((vocab, vocab), 0.02)
    for a in range(vocab):
        nxt = rng.choice(vocab, 3, replace=False)
        trans[a, nxt] += rng.dirichlet(np.ones(3)) * 4
    trans /= trans.sum(1, keepdims=True)
    s = np.empty(n, dtype=np.int64)
    s[0] = 0
    u = rng.random(n)
    cum = trans.cumsum(1)
    for i in range(1, n):
        s[i] = min(int(np.searchsorted(cum[s[i - 1]], u[i])), vocab - 1)
    return torch.tensor(s)


# -- models --------------------------------------------------------------------


class ConvNet(nn.Module):
    def __init__(self, k: int, act: str, dropout: float, double_softmax: bool, deep: int = 0) -> None:
        super().__init__()
        a = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}[act]
        layers: List[nn.Module] = [nn.Conv2d(1, 8, 3, padding=1), a(), nn.Conv2d(8, 16, 3, padding=1), a()]
        for _ in range(deep):
            layers += [nn.Conv2d(16, 16, 3, padding=1), a()]
        layers += [nn.MaxPool2d(2), nn.Flatten()]
        if dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(16 * 16, k))
        if double_softmax:
            layers.append(nn.Softmax(dim=1))
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.features(x)


class MLP(nn.Sequential):
    def __init__(self, d: int, hidden: List[int], k: int, act: str, dropout: float, double_softmax: bool):
        a = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU}[act]
        layers: List[nn.Module] = []
        for h in hidden:
            layers += [nn.Linear(d, h), a()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = h
        layers.append(nn.Linear(d, k))
        if double_softmax:
            layers.append(nn.Softmax(dim=1))
        super().__init__(*layers)


class SeqNet(nn.Module):
    def __init__(self, cell: str, d: int, h: int, k: int) -> None:
        super().__init__()
        self.rnn = (nn.LSTM if cell == "lstm" else nn.GRU)(d, h, batch_first=True)
        self.fc = nn.Linear(h, k)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class LM(nn.Module):
    def __init__(self, vocab: int, d: int, layers: int, seq: int, act: str, norm_first: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.randn(seq, d) * 0.02)
        layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, activation=act,
                                           batch_first=True, norm_first=norm_first)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(d, vocab)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq))

    def forward(self, x):
        t = x.shape[1]
        h = self.encoder(self.embed(x) + self.pos[:t], mask=self.mask[:t, :t], is_causal=True)
        return self.head(h)


# -- the training loop ----------------------------------------------------------------


def _scale_init(model: nn.Module, spec: Dict[str, Any]) -> None:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if spec.get("init_scale") and p.dim() >= 2:
                p.mul_(spec["init_scale"])
            if spec.get("bias_init") is not None and name.endswith("bias") and p.dim() == 1:
                p.fill_(spec["bias_init"])


def _freeze(model: nn.Module, prefixes: List[str]) -> None:
    for name, p in model.named_parameters():
        if any(name.startswith(pre) for pre in prefixes):
            p.requires_grad_(False)


def train(name: str, arch: str, spec: Dict[str, Any], seed: int, tmp: str) -> Trace:
    torch.manual_seed(seed)
    np.random.seed(seed)
    lm = arch == "transformer"
    if arch == "convnet":
        xt, yt, xv, yv, k, raw = digits_images(seed, spec)
        model: nn.Module = ConvNet(k, spec.get("act", "relu"), spec.get("dropout", 0.0),
                                   spec.get("double_softmax", False), spec.get("deep", 0))
    elif arch == "mlp":
        xt, yt, xv, yv, k, raw = digits_images(seed, spec)
        xt, xv = xt.reshape(len(xt), -1), xv.reshape(len(xv), -1)
        model = MLP(64, spec.get("hidden", [64, 64]), k, spec.get("act", "relu"),
                    spec.get("dropout", 0.0), spec.get("double_softmax", False))
    elif arch == "rnn":
        xt, yt, xv, yv, k, raw = seq_data(seed, spec)
        model = SeqNet(spec.get("cell", "lstm"), xt.shape[2], spec.get("hidden", 32), k)
    else:
        seq, vocab = 16, 16
        text = markov_text(seed)
        if spec.get("shuffle_labels"):
            text = text[torch.randperm(len(text), generator=torch.Generator().manual_seed(seed))]
        nval = len(text) // 5
        tv, tt = text[:nval], text[nval:]
        k = vocab
        model = LM(vocab, spec.get("d", 32), spec.get("layers", 2), seq, spec.get("act", "gelu"),
                   spec.get("norm_first", False))
    _scale_init(model, spec)
    _freeze(model, spec.get("frozen", []))
    loss_fn = nn.CrossEntropyLoss()
    opt_over = spec.get("opt_over")  # the optimizer is built over these modules only
    params = [p for n, p in model.named_parameters()
              if p.requires_grad and (opt_over is None or any(n.startswith(o) for o in opt_over))]
    kind = spec.get("opt", "sgd")
    if kind == "sgd":
        opt = torch.optim.SGD(params, lr=spec["lr"], momentum=spec.get("momentum", 0.0),
                              weight_decay=spec.get("wd", 0.0))
    elif kind == "adamw":
        opt = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=spec.get("wd", 0.01))
    else:
        opt = torch.optim.Adam(params, lr=spec["lr"], weight_decay=spec.get("wd", 0.0))
    epochs, batch = spec.get("epochs", 10), spec.get("batch", 32)
    if lm:
        steps_per_epoch = spec.get("steps_per_epoch", 40)
    else:
        steps_per_epoch = math.ceil(len(xt) / batch)
    total = epochs * steps_per_epoch
    warmup = spec.get("warmup", 0)
    sched_kind = spec.get("schedule", "const")

    def lr_at(step: int) -> float:
        lr = sim.schedule(sched_kind, spec["lr"], step, total, warmup)
        if spec.get("lr_raise") and step >= int(spec["lr_raise"][0] * total):
            lr *= spec["lr_raise"][1]
        return lr

    config = {k2: v for k2, v in spec.items()}
    config.update({"seed": seed, "epochs": epochs, "batch_size": batch, "model": arch})
    tr = Trace(name, config)
    run = trainlens.init(name=f"{name}--full", project="diagbench", config=config, mode="offline",
                         dir=tmp, run_key=name, flush_every=3600)
    tlt.watch(run, model, every=10, histograms_every=200, optimizer=opt, loss_fn=loss_fn)
    if not lm:
        for split, (xa, ya) in (("train", (raw[0], raw[1])), ("val", (raw[2], raw[3]))):
            fields = sim.summary(np.asarray(xa).reshape(len(xa), -1), np.asarray(ya), split)
            fields.pop("split")
            run.log_dataset(split, **fields)
    gen = torch.Generator().manual_seed(seed + 1)
    step = 0
    nonfinite_step = None
    dead_late = 0
    clip = spec.get("clip")
    corrupt_step = int(spec["corrupt_at"] * total) if spec.get("corrupt_at") else None
    for ep in range(epochs):
        model.train()
        if not lm:
            order = torch.randperm(len(xt), generator=gen)
        correct = seen = 0
        for b in range(steps_per_epoch):
            if lm:
                starts = torch.randint(0, len(tt) - seq - 1, (batch,), generator=gen)
                xb = torch.stack([tt[s:s + seq] for s in starts])
                yb = torch.stack([tt[s + 1:s + seq + 1] for s in starts])
            else:
                ids = order[b * batch:(b + 1) * batch]
                xb, yb = xt[ids], yt[ids]
            if corrupt_step is not None and step >= corrupt_step and not lm:
                xb = xb.clone()
                xb.view(len(xb), -1)[:, :4] = float("nan")
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            if not spec.get("no_zero_grad"):
                opt.zero_grad()
            out = model(xb)
            if lm:
                loss = loss_fn(out.reshape(-1, k), yb.reshape(-1))
                pred = out.argmax(-1)
            else:
                loss = loss_fn(out, yb)
                pred = out.argmax(1)
            loss.backward()
            norms = {n: float(p.grad.norm()) for n, p in model.named_parameters() if p.grad is not None}
            gnorm = float(torch.nn.utils.clip_grad_norm_(
                [p for p in model.parameters() if p.grad is not None],
                clip if clip else float("inf")))
            opt.step()
            lv = loss.item()
            correct += int((pred == yb).sum())
            seen += yb.numel()
            if not math.isfinite(lv) and nonfinite_step is None:
                nonfinite_step = step
            wg = [v for n, v in norms.items() if n.endswith("weight") or "weight_" in n]
            if wg and all(v == 0.0 for v in wg) and step >= total // 2:
                dead_late += 1
            tr.step(lv, lr_at(step), norms, gnorm)
            run.log({"train/loss": lv, "lr": lr_at(step)}, step=step)
            step += 1
        model.eval()
        with torch.no_grad():
            if lm:
                vs = torch.arange(0, len(tv) - seq - 1, seq)[:200]
                xvb = torch.stack([tv[s:s + seq] for s in vs])
                yvb = torch.stack([tv[s + 1:s + seq + 1] for s in vs])
                o = model(xvb)
                vl = float(loss_fn(o.reshape(-1, k), yvb.reshape(-1)))
                va = float((o.argmax(-1) == yvb).float().mean())
            else:
                o = model(xv)
                vl = float(loss_fn(o, yv))
                va = float((o.argmax(1) == yv).float().mean())
        ta = correct / max(seen, 1)
        tr.epochs.append({"step": step - 1, "train_acc": ta, "val_loss": vl, "val_acc": va})
        run.log({"epoch": ep + 1, "train/acc": ta, "val/loss": vl, "val/acc": va}, step=step - 1)
    probs = None
    if arch in ("mlp", "convnet") and spec.get("fault") in sim.PREDICTING_FAULTS:
        # The last evaluation's class probabilities, as a script sends them.
        probs = torch.softmax(o.double(), dim=1)
        run.log_predictions("val", yv, probs, step=step - 1)
    run.finish("finished")
    path = run.spool.path
    with open(path, encoding="utf-8") as f:
        import json
        recs = [json.loads(line) for line in f if line.strip()]
    os.remove(path)
    # The client's run line carries the run_key; keep the recording as it is.
    tr.recorded["full"] = recs
    if lm:
        counts = np.bincount(tt.numpy(), minlength=k)
    else:
        counts = np.bincount(np.asarray(raw[1]), minlength=k)
    prior = counts / counts.sum()
    dead = [r["value"] for r in recs if r.get("type") == "scalar" and r["key"].startswith("dead_frac/")
            and r["step"] >= total // 2 and isinstance(r["value"], float)]
    sat = [r["value"] for r in recs if r.get("type") == "scalar" and r["key"].startswith("sat_frac/")
           and r["step"] >= total // 2 and isinstance(r["value"], float)]
    tr.facts.update({
        "classes": k,
        "chance_loss": math.log(k) if lm else float(-sum(p * math.log(p) for p in prior if p > 0)),
        "chance_acc": float(prior.max()) if not lm else 1.0 / k,
        "nonfinite_step": nonfinite_step, "dead_steps_late": dead_late,
        "late_steps": total - total // 2,
        "true_dead": float(np.median(dead)) if dead else None,
        "true_sat": float(np.median(sat)) if sat else None, "steps": total,
        "onset": int(spec["lr_raise"][0] * total) if spec.get("lr_raise") else corrupt_step,
    })
    if probs is not None and spec.get("flip"):
        tr.facts.update(sim.prediction_facts({**spec, "dataset": "digits"}, seed,
                                             np.asarray(raw[3]), probs.numpy()))
    sim.finish_facts(tr)
    return tr


def run_all(jobs: List[Dict[str, Any]]) -> List[Trace]:
    tmp = tempfile.mkdtemp(prefix="diagbench-spool-")
    try:
        return [train(j["name"], j["arch"], j["spec"], j["seed"], tmp) for j in jobs]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
