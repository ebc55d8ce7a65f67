#!/usr/bin/env python3
"""Overhead of trainlens.torch.watch on CPU training steps.

Times --steps training steps (SGD, batch 64, random data) of an MLP
64-256-256-10 and of a CNN (two 3x3 conv layers of 32 channels on 28x28
inputs), without and with watch(every=10), alternating --reps times, and
prints the median step time of each and the overhead. The run is a stand-in
that buffers what it is given (as the real client's log() does) without a
server, so the figure is the instrumentation's own cost.

    python clients/python/bench/watch_overhead.py
"""

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import torch  # noqa: E402
from torch import nn  # noqa: E402

import trainlens.torch as tlt  # noqa: E402


class BufferingRun:
    def __init__(self):
        self.points = 0

    def log(self, metrics, step):
        self.points += len(metrics)

    def log_histogram(self, key, step, **kw):
        self.points += 1

    def log_model(self, **kw):
        pass


def models():
    mlp = lambda: nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    cnn = lambda: nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
                                nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, 10))
    return {"mlp 64-256-256-10": (mlp, (64, 64)), "cnn 2x conv3x3x32 on 28x28": (cnn, (64, 1, 28, 28))}


def time_steps(make, shape, steps, watched, every, hist_every):
    torch.manual_seed(0)
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(*shape), torch.randint(0, 10, (shape[0],))
    w = tlt.watch(BufferingRun(), model, every=every, histograms_every=hist_every, optimizer=opt) if watched else None
    model.train()
    for _ in range(5):  # warm-up
        opt.zero_grad(); nn.functional.cross_entropy(model(x), y).backward(); opt.step()
    t0 = time.perf_counter()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    dt = (time.perf_counter() - t0) / steps
    if w:
        w.unwatch()
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--histograms-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, (make, shape) in models().items():
        base, watched = [], []
        for _ in range(args.reps):
            base.append(time_steps(make, shape, args.steps, False, args.every, args.histograms_every))
            watched.append(time_steps(make, shape, args.steps, True, args.every, args.histograms_every))
        b, w = statistics.median(base), statistics.median(watched)
        print(f"{name}: {b * 1e3:.3f} ms/step plain (min {min(base) * 1e3:.3f}, max {max(base) * 1e3:.3f}), "
              f"{w * 1e3:.3f} ms/step watched every={args.every} (min {min(watched) * 1e3:.3f}, "
              f"max {max(watched) * 1e3:.3f}): overhead {100 * (w / b - 1):+.1f} %")


if __name__ == "__main__":
    main()
