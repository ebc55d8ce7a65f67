#!/usr/bin/env python3
"""Cost of one ``run.log`` call while the client sends in the background.

Logs ``--keys`` scalars per call at ``--rate`` points per second for
``--seconds`` against a live server (``--server``, default
$TRAINLENS_SERVER), and prints the median, p90 and p99 of each call's
wall time, in microseconds, over ``--reps`` repetitions (each a fresh run):
the median of the medians and their spread. The background thread sends
batches meanwhile, so the figure includes its contention (the GIL).

    python clients/python/bench/log_cost.py --server http://127.0.0.1:8080
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import trainlens  # noqa: E402


def one(server, rate, keys, seconds, mode):
    run = trainlens.init(project="bench-log", server=server, mode=mode, dir=tempfile.mkdtemp())
    names = [f"metric/{i}" for i in range(keys)]
    calls = int(rate * seconds / keys)
    gap = keys / rate
    times = []
    start = time.perf_counter()
    for step in range(calls):
        metrics = {k: 1.0 / (step + 1 + i) for i, k in enumerate(names)}
        t0 = time.perf_counter_ns()
        run.log(metrics, step=step)
        times.append((time.perf_counter_ns() - t0) / 1000)
        wait = start + (step + 1) * gap - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
    run.finish()
    times.sort()
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]  # noqa: E731
    return {"median_us": q(0.5), "p90_us": q(0.9), "p99_us": q(0.99), "calls": calls}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default=os.environ.get("TRAINLENS_SERVER", "http://127.0.0.1:8080"))
    ap.add_argument("--rate", type=float, default=10_000, help="points per second")
    ap.add_argument("--keys", type=int, default=4, help="scalars per log call")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--mode", default="online", choices=["online", "offline"])
    args = ap.parse_args()
    reps = [one(args.server, args.rate, args.keys, args.seconds, args.mode) for _ in range(args.reps)]
    med = [r["median_us"] for r in reps]
    print(json.dumps({"rate": args.rate, "keys": args.keys, "mode": args.mode, "reps": reps,
                      "median_of_medians_us": statistics.median(med),
                      "spread_us": [min(med), max(med)],
                      "median_p99_us": statistics.median(r["p99_us"] for r in reps)}, indent=1))


if __name__ == "__main__":
    main()
