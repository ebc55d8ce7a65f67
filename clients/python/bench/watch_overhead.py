#!/usr/bin/env python3
"""Overhead of trainlens.torch.watch on CPU training steps.

Times --steps training steps (SGD, batch 64, random data) of an MLP
64-256-256-10 and of a CNN (two 3x3 conv layers of 32 channels on 28x28
inputs), without and with watch(every=10), block by block in one process, and
prints the median step time of each (wall clock and process CPU time) and
the overhead. The run is a stand-in
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


def setup(make, shape, watched, every, hist_every):
    torch.manual_seed(0)
    model = make()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(*shape), torch.randint(0, 10, (shape[0],))
    if watched:
        tlt.watch(BufferingRun(), model, every=every, histograms_every=hist_every, optimizer=opt)
    model.train()

    def steps(n):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return (time.perf_counter() - t0) / n, (time.process_time() - c0) / n

    steps(5)  # warm-up
    return steps


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=200, help="steps per block (a multiple of --histograms-every "
                    "holds the same share of measured and histogram steps as a long run)")
    ap.add_argument("--reps", type=int, default=5, help="blocks of each")
    ap.add_argument("--every", type=int, default=10)
    ap.add_argument("--histograms-every", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", choices=["all", "mlp", "cnn"], default="all")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name, (make, shape) in models().items():
        if args.model != "all" and not name.startswith(args.model):
            continue
        # Both models live in one process and take turns block by block, so
        # that a change of the machine's load falls on both alike; the
        # overhead is the median of the ratios of neighbouring blocks.
        plain = setup(make, shape, False, args.every, args.histograms_every)
        watched = setup(make, shape, True, args.every, args.histograms_every)
        base, inst = [], []
        for _ in range(args.reps):
            base.append(plain(args.steps))
            inst.append(watched(args.steps))
        # Wall time, and the process's CPU time (one torch thread): the CPU
        # figure holds up better on a loaded machine, where the wall clock
        # also counts the time other processes had the core.
        for clock, i in (("wall", 0), ("cpu", 1)):
            bs, ws = [r[i] for r in base], [r[i] for r in inst]
            ratios = sorted(w / b - 1 for b, w in zip(bs, ws))
            print(f"{name} [{clock}]: {statistics.median(bs) * 1e3:.3f} ms/step plain, "
                  f"{statistics.median(ws) * 1e3:.3f} ms/step watched every={args.every}: overhead "
                  f"{100 * statistics.median(ratios):+.1f} % (blocks: min {100 * ratios[0]:+.1f} %, "
                  f"max {100 * ratios[-1]:+.1f} %, n={len(ratios)})")


if __name__ == "__main__":
    main()
