#!/usr/bin/env python3
"""Runs page latency: GET /?project=… with 10,000 runs in the project.

Starts `trainlens serve` on a fresh SQLite file (or, with --pg-url, a fresh
PostgreSQL database created and dropped through psql), creates --runs runs
in one project, each with a `train/loss` series of --steps points, a
`val/loss` and `val/acc` every 50 steps, a tag and an end status (every 20th
run diverges to NaN, so the diagnosis marks it critical), waits until the
background diagnosis has caught up, then times the runs page — sparklines
included — for several sorts, filters and a deep page: --warmup untimed
and --requests timed requests each, one client on a keep-alive connection,
the clock around the whole body. Prints median, p90, min and max per
scenario (milliseconds) and exits 1 when a median is over --target-ms.
Standard library only.

    cargo build --release
    python3 bench/runs_page.py --server-bin target/release/trainlens
"""

import json
import math
import os
import subprocess
import sys
import tempfile
import time
import uuid

import benchlib

PROJECT = "bench"

SCENARIOS = [
    ("newest first", ""),
    ("sort by val loss", "&sort=val_loss&dir=asc"),
    ("sort by health", "&sort=health"),
    ("sort by last step", "&sort=step"),
    ("sort by name, page 150", "&sort=name&page=150"),
    ("filter status+tag", "&status=failed&tag=adam"),
    ("filter health", "&health=critical"),
    ("search name", "&q=run-01"),
]


def make_run(conn, i, steps):
    diverges = i % 20 == 7
    run = json.loads(conn.call("POST", "/api/v1/runs", {
        "project": PROJECT, "name": f"run-{i:05d}", "config": {"lr": 0.001 * (1 + i % 7)},
        "tags": ["adam" if i % 3 else "sgd", f"seed-{i % 5}"]}))
    rid = run["id"]
    loss, val, acc, vsteps = [], [], [], []
    for s in range(steps):
        v = 2.3 * math.exp(-s / (steps / 3)) + 0.05 * math.sin(s * 0.7 + i) + 0.1
        if diverges and s > steps // 2:
            v = "NaN" if s > steps * 3 // 4 else v * 10 ** ((s - steps // 2) / 20)
        loss.append(v)
        if s % 50 == 0:
            vsteps.append(s)
            val.append(v if isinstance(v, str) else v * 1.1)
            acc.append(min(0.99, 0.1 + 0.9 * (s + 1) / steps))
    conn.call("POST", f"/api/v1/runs/{rid}/scalars", {"series": [
        {"key": "train/loss", "steps": list(range(steps)), "values": loss},
        {"key": "val/loss", "steps": vsteps, "values": val},
        {"key": "val/acc", "steps": vsteps, "values": acc}]})
    status = "failed" if diverges else ("finished" if i % 4 else "running")
    if status != "running":
        conn.call("POST", f"/api/v1/runs/{rid}/finish", {"status": status})


def load(port, runs, steps, clients):
    benchlib.in_parallel(port, runs, clients, lambda conn, i: make_run(conn, i, steps))


def main():
    ap = benchlib.parser(__doc__, {"runs": 10_000, "steps": 1000, "clients": 4, "warmup": 3, "requests": 20})
    ap.add_argument("--target-ms", type=float, default=100.0)
    ap.add_argument("--diagnosis-timeout", type=float, default=600.0,
                    help="seconds to wait for the diagnosis to catch up before timing")
    ap.add_argument("--pg-url", help="an existing PostgreSQL database to create a throw-away one beside")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        pg_db = None
        if args.pg_url:
            pg_db = f"trainlens_bench_{uuid.uuid4().hex[:12]}"
            subprocess.run(["psql", args.pg_url, "-qc", f"CREATE DATABASE {pg_db}"], check=True)
            url = args.pg_url.rsplit("/", 1)[0] + "/" + pg_db
        else:
            url = f"sqlite://{tmp}/runs.db"
        server, port = benchlib.serve(args.server_bin, url, stderr=open(f"{tmp}/server.log", "w"))
        try:
            benchlib.wait_healthy(port, seconds=20)
            t0 = time.monotonic()
            load(port, args.runs, args.steps, args.clients)
            loaded = time.monotonic() - t0
            print(f"{'postgres' if pg_db else 'sqlite'}: created {args.runs:,} runs of {args.steps:,} loss "
                  f"points in {loaded:.0f} s", file=sys.stderr)
            benchlib.wait_diagnosed(port, args.diagnosis_timeout)

            conn = benchlib.Conn(port)
            results = {}
            print(f"| GET /?project={PROJECT}… ({args.runs:,} runs) | median ms | p90 | min | max | rows |")
            print("|---|---|---|---|---|---|")
            for label, extra in SCENARIOS:
                path = f"/?project={PROJECT}{extra}"
                times, body = benchlib.time_gets(lambda: conn.call("GET", path), args.requests, args.warmup)
                rows = body.count(b'<td class="name">')
                if b"<svg class=\"spark\"" not in body and rows:
                    sys.exit(f"{label}: no sparkline on the page")
                r = {**benchlib.summary(times), "rows": rows, "path": path}
                results[label] = r
                print(f"| {label} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['min_ms']:.1f} | "
                      f"{r['max_ms']:.1f} | {rows} |")
            worst = max(r["median_ms"] for r in results.values())
            print(f"\nworst median {worst:.1f} ms (target ≤ {args.target_ms:.0f} ms): "
                  f"{'PASS' if worst <= args.target_ms else 'FAIL'}; machine: {os.cpu_count()} cpus")
            benchlib.write_results(args.out, args, results)
            if worst > args.target_ms:
                sys.exit(1)
        finally:
            server.terminate()
            server.wait(60)
            if pg_db:
                subprocess.run(["psql", args.pg_url, "-qc", f"DROP DATABASE {pg_db} WITH (FORCE)"])


if __name__ == "__main__":
    main()
