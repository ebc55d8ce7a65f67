#!/usr/bin/env python3
"""Compare and tune latency: the compare page of big runs, and a project's
hyperparameter view over many runs.

Starts `trainlens serve` on a fresh SQLite file and loads

  * compare: --runs runs of --points points each of `train/loss` and
    `val/loss` (with configs), compared on one page:
    GET /compare?run=…×5 (the validation loss overlaid, the default) and
    with `key=train/loss&smooth=0.9`;
  * tune: --tune-runs runs in one project, each with a config of seven
    parameters (numbers, strings, a list; a seed in half of them), a
    `val/loss` of --tune-points points and a `val/acc` every 50 steps:
    GET /projects/tune/params (lowest val/loss, the default) and with
    `metric=last:val/acc`.

Waits until the diagnosis has caught up (so the runner does not compete),
then times --requests GETs of each page (after --warmup untimed ones), one
client on a keep-alive connection, the clock around the whole body, and
prints median, p90, min and max (milliseconds) and the page's size.
Targets, this script's own: the compare page ≤ 150 ms (the run page's
budget for 50 × 100k points), the hyperparameter view ≤ 200 ms. Standard
library only.

    cargo build --release
    python3 bench/compare_page.py --server-bin target/release/trainlens
"""

import math
import sys
import time

import benchlib

TARGETS_MS = {"compare": 150.0, "tune": 200.0}


def load_compare(port, runs, points):
    conn = benchlib.Conn(port)
    ids = []
    for i in range(runs):
        run = conn.json("POST", "/api/v1/runs", {
            "project": "compare", "name": f"big-{i}",
            "config": {"lr": 1e-3 * (i + 1), "batch": 32 * (1 + i % 2), "opt": "adam" if i % 2 else "sgd"}})
        ids.append(run["id"])
        for lo in range(0, points, 100_000):
            steps = list(range(lo, min(points, lo + 100_000)))
            loss = [2.0 * math.exp(-s / (points / 4)) + 0.05 * math.sin(s * 0.37 + i) + 0.1 * i for s in steps]
            val = [v * 1.05 for v in loss]
            conn.call("POST", f"/api/v1/runs/{run['id']}/scalars", {"series": [
                {"key": "train/loss", "steps": steps, "values": loss},
                {"key": "val/loss", "steps": steps, "values": val}]})
    return ids


def tune_run(conn, i, points):
    lr = 10 ** (-5 + 4 * ((i * 7919) % 1000) / 1000)
    opt = ["adam", "sgd", "adamw"][i % 3]
    config = {"lr": lr, "batch": [16, 32, 64, 128][i % 4], "opt": opt, "dropout": (i % 5) / 10,
              "layers": [64] * (1 + i % 3), "schedule": {"kind": "cosine" if i % 2 else "step", "warmup": i % 7}}
    if i % 2:
        config["seed"] = i
    run = conn.json("POST", "/api/v1/runs", {"project": "tune", "name": f"trial-{i:04d}", "config": config})
    best = 0.2 + abs(math.log10(lr) + 3) * 0.3 + (0.1 if opt == "sgd" else 0) + (i % 11) * 0.01
    steps = list(range(points))
    vsteps = [s for s in steps if s % 50 == 0]
    conn.call("POST", f"/api/v1/runs/{run['id']}/scalars", {"series": [
        {"key": "val/loss", "steps": steps, "values": [best + 2 * math.exp(-s / (points / 5)) for s in steps]},
        {"key": "val/acc", "steps": vsteps, "values": [min(0.99, 1 - best / 3 - 0.5 * math.exp(-s / 50))
                                                       for s in vsteps]}]})


def load_tune(port, runs, points, clients=4):
    benchlib.in_parallel(port, runs, clients, lambda conn, i: tune_run(conn, i, points))


def time_page(conn, path, requests, warmup, check):
    samples, body = benchlib.time_gets(lambda: conn.call("GET", path), requests, warmup)
    if check.encode() not in body:
        sys.exit(f"{path}: {check!r} not on the page")
    return {**benchlib.summary(samples), "bytes": len(body), "path": path}


def main():
    ap = benchlib.parser(__doc__, {"runs": 5, "points": 100_000, "tune-runs": 1000, "tune-points": 200,
                                   "requests": 20, "warmup": 3})
    ap.add_argument("--diagnosis-timeout", type=float, default=600.0)
    ap.add_argument("--out")
    args = ap.parse_args()

    with benchlib.sqlite_server(args.server_bin, "compare.db") as (server, port):
        t0 = time.monotonic()
        ids = load_compare(port, args.runs, args.points)
        load_tune(port, args.tune_runs, args.tune_points)
        print(f"loaded in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        benchlib.wait_diagnosed(port, args.diagnosis_timeout)
        time.sleep(1)

        runs = "&".join(f"run={i}" for i in ids)
        pages = [
            ("compare", f"{args.runs} runs x {args.points:,} points, val/loss", f"/compare?{runs}",
             'id="chart-compare"'),
            ("compare", "same, train/loss smoothed 0.9", f"/compare?{runs}&key=train%2Floss&smooth=0.9",
             'id="chart-compare"'),
            ("tune", f"{args.tune_runs:,} runs, lowest val/loss", "/projects/tune/params", 'id="chart-parallel"'),
            ("tune", f"{args.tune_runs:,} runs, last val/acc", "/projects/tune/params?metric=last%3Aval%2Facc",
             'id="chart-parallel"'),
        ]
        conn = benchlib.Conn(port)
        results, ok = {}, True
        print("| page | median ms | p90 | min | max | KiB | target |")
        print("|---|---|---|---|---|---|---|")
        for kind, label, path, check in pages:
            r = time_page(conn, path, args.requests, args.warmup, check)
            target = TARGETS_MS[kind]
            verdict = "PASS" if r["median_ms"] <= target else "FAIL"
            ok &= verdict == "PASS"
            results[label] = {**r, "target_ms": target, "verdict": verdict}
            print(f"| {label} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['min_ms']:.1f} | "
                  f"{r['max_ms']:.1f} | {r['bytes'] / 1024:.0f} | ≤ {target:.0f} ms {verdict} |")
        benchlib.write_results(args.out, args, results)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
