#!/usr/bin/env python3
"""Train an MLP on scikit-learn's digits with trainlens watching, with or
without a classic fault, and print what trainlens found.

    python clients/python/examples/train_digits.py --fault lr-too-high [--seed 1]

From Python, ``run_demo(fault, seed, server)`` trains and returns
``(run_url, findings)`` (tests/test_demo.py checks every fault that way).

Faults: none, lr-too-high (SGD lr 1.5, momentum 0.9), vanishing (a deep
sigmoid net), overfit (100 training samples, a wide net, no regularisation),
dead-relu (biases initialised far below zero), imbalance (one class keeps
all its samples, the others 5 each), no-optimizer-step (optimizer.step()
forgotten), softmax-before-ce (a Softmax layer before CrossEntropyLoss).

Needs torch and scikit-learn; the server is --server or $TRAINLENS_SERVER
(default http://127.0.0.1:8080, e.g. `cargo run --release`).
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from torch import nn  # noqa: E402

import trainlens  # noqa: E402
import trainlens.torch  # noqa: E402,F401

FAULTS = ["none", "lr-too-high", "vanishing", "overfit", "dead-relu", "imbalance",
          "no-optimizer-step", "softmax-before-ce"]
LR_TOO_HIGH = 1.5


def data(fault, seed):
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype("float32")
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    if fault == "overfit":
        x_tr, y_tr = x_tr[:100], y_tr[:100]
    if fault == "imbalance":
        keep = [i for i in range(len(y_tr)) if y_tr[i] == 0]
        for c in range(1, 10):
            keep += [i for i in range(len(y_tr)) if y_tr[i] == c][:5]
        x_tr, y_tr = x_tr[keep], y_tr[keep]
    t = lambda a, dtype=torch.float32: torch.tensor(a, dtype=dtype)
    return t(x_tr), t(y_tr, torch.long), t(x_val), t(y_val, torch.long)


def model_for(fault):
    if fault == "vanishing":
        layers, width = [], 64
        for i in range(8):
            layers += [nn.Linear(64 if i == 0 else width, width), nn.Sigmoid()]
        return nn.Sequential(*layers, nn.Linear(width, 10))
    width = 512 if fault == "overfit" else 128
    m = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))
    if fault == "dead-relu":
        with torch.no_grad():
            for layer in (m[0], m[2]):
                layer.bias.fill_(-3.0)
    if fault == "softmax-before-ce":
        m = nn.Sequential(*m, nn.Softmax(dim=1))
    return m


def wait_for_findings(run, timeout=30.0):
    """The run's open findings once the server has diagnosed all its data
    (the diagnosis' ``up_to_date``), or what it has after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        body = run._http.request("GET", f"/api/v1/runs/{run.id}/findings?status=open")
        if body.get("up_to_date") or time.monotonic() > deadline:
            return body["findings"]
        time.sleep(0.25)


def run_demo(fault="none", seed=0, server=None, epochs=None, project="demo", verbose=False):
    """Trains the digits MLP with ``fault`` and returns ``(run_url, findings)``
    (the open findings, as GET /api/v1/runs/{id}/findings gives them)."""
    if fault not in FAULTS:
        raise ValueError(f"fault must be one of {FAULTS}, got {fault!r}")
    # A net this small gains nothing from intra-op threads, and on a busy
    # machine their spin-waits make training several times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _train(fault, seed, server, epochs, project, verbose)
    finally:
        torch.set_num_threads(threads)


def _train(fault, seed, server, epochs, project, verbose):
    torch.manual_seed(seed)

    x_tr, y_tr, x_val, y_val = data(fault, seed)
    model = model_for(fault)
    if fault == "lr-too-high":
        lr, momentum = LR_TOO_HIGH, 0.9
    elif fault == "vanishing":
        lr, momentum = 0.01, 0.0
    else:
        lr, momentum = 0.05, 0.9
    epochs = epochs or (150 if fault == "overfit" else 30)
    batch = 32
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn = nn.CrossEntropyLoss()
    config = {"dataset": "digits", "fault": fault, "seed": seed, "lr": lr, "momentum": momentum,
              "epochs": epochs, "batch": batch, "optimizer": "sgd", "weight_decay": 0.0, "dropout": 0.0}

    with trainlens.init(project=project, name=f"digits-{fault}-s{seed}", config=config,
                        server=server) as run:
        if verbose:
            print(f"run: {run.url}")
        trainlens.torch.watch(run, model, every=5, histograms_every=100, optimizer=opt, loss_fn=loss_fn)
        run.log_dataset("train", x_tr, y_tr)
        run.log_dataset("val", x_val, y_val)
        step = 0
        for epoch in range(epochs):
            model.train()
            perm = torch.randperm(len(x_tr))
            for i in range(0, len(x_tr), batch):
                idx = perm[i:i + batch]
                opt.zero_grad()
                loss = loss_fn(model(x_tr[idx]), y_tr[idx])
                loss.backward()
                if fault != "no-optimizer-step":
                    opt.step()
                run.log({"train/loss": loss.item(), "lr": lr}, step=step)
                step += 1
            model.eval()
            with torch.no_grad():
                train_out, val_out = model(x_tr), model(x_val)
                metrics = {
                    "epoch": epoch,
                    "train/acc": (train_out.argmax(1) == y_tr).float().mean().item(),
                    "val/loss": loss_fn(val_out, y_val).item(),
                    "val/acc": (val_out.argmax(1) == y_val).float().mean().item(),
                }
            run.log(metrics, step=step - 1)
    if verbose:
        print(f"trained {step} steps; val/acc {metrics['val/acc']:.3f}")

    # The server diagnoses within seconds of the last data.
    return run.url, wait_for_findings(run)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fault", choices=FAULTS, default="none")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--server", default=None)
    ap.add_argument("--project", default="demo")
    args = ap.parse_args()
    _, findings = run_demo(args.fault, args.seed, args.server, epochs=args.epochs, project=args.project,
                           verbose=True)
    if not findings:
        print("no findings")
    for f in findings:
        onset = f" from step {f['onset_step']}" if f.get("onset_step") is not None else ""
        print(f"{f['severity'].upper():<8} {f['kind']}{onset}: {f['title']}")
        for fix in f.get("fixes", [])[:2]:
            print(f"         fix: {fix}")


if __name__ == "__main__":
    main()
