#!/usr/bin/env python3
"""Run-page latency: GET /runs/{id} of big runs, with every chart drawn.

Starts `trainlens serve` on a fresh SQLite file and loads two runs:

  * scalars: --series series x --points points (train/val loss and
    accuracy, then grad_norm/<layer> and update_ratio/<layer> halves), the
    page's line charts, gradient-flow heatmap and update-ratio chart;
  * watch: what trainlens.torch.watch logs for --layers layers over
    --watch-steps steps (grad_norm, update_ratio, dead_frac every 10 steps),
    the model record, and --hist-keys histogram keys x --hist-steps steps of
    30 bins: a --layers-row heatmap and the distribution charts.

Waits until both are diagnosed (so the runner does not compete), then times
--requests GETs of each page (after --warmup untimed ones), one client, and
prints the median, min, p90 and max. Standard library only.

    python3 bench/run_page.py --server-bin target/release/trainlens
"""

import http.client
import json
import math
import sys
import time

import benchlib

TARGETS_MS = {"scalars": 150.0, "watch": 250.0}


def call(port, method, path, body=None, ctype="application/json", raw=False):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request(method, path, body=body, headers={"content-type": ctype} if body else {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status >= 300:
        raise SystemExit(f"{method} {path}: {resp.status} {data[:300]!r}")
    return data if raw else json.loads(data)


def new_run(port, name):
    return call(port, "POST", "/api/v1/runs", json.dumps({"project": "page-bench", "name": name}))["id"]


def send_series(port, run, key, steps, f, batch=100_000):
    for lo in range(0, len(steps), batch):
        part = steps[lo:lo + batch]
        values = [f(s) for s in part]
        body = json.dumps({"series": [{"key": key, "steps": part,
                                       "values": [v if math.isfinite(v) else "NaN" for v in values]}]})
        call(port, "POST", f"/api/v1/runs/{run}/scalars", body)


def load_scalars(port, series, points):
    run = new_run(port, "scalars")
    steps = list(range(points))
    keys = ["train/loss", "val/loss", "train/acc", "val/acc"]
    layers = series - len(keys)
    keys += [f"grad_norm/layer{i}" for i in range(layers - layers // 2)]
    keys += [f"update_ratio/layer{i}" for i in range(layers // 2)]
    for i, key in enumerate(keys):
        send_series(port, run, key, steps,
                    lambda s, i=i: (1.0 + ((s * 7919 + i) % 1000) / 1000.0) * 10 ** -(i % 5))
    return run


def load_watch(port, layers, steps, hist_keys, hist_steps):
    run = new_run(port, "watch")
    names = [f"block{i}.conv" for i in range(layers)]
    measured = list(range(0, steps, 10))
    for i, layer in enumerate(names):
        scale = 10 ** (-6 * i / max(1, layers - 1))
        send_series(port, run, f"grad_norm/{layer}", measured, lambda s: scale * (1 + (s % 97) / 97))
        send_series(port, run, f"update_ratio/{layer}", measured, lambda s: 1e-3 * scale)
        send_series(port, run, f"dead_frac/{layer}", measured, lambda s: min(1.0, s / steps * i / layers))
    lines = [json.dumps({"type": "model", "layers": [{"name": n, "type": "Conv2d"} for n in names]})]
    families = ["weights", "grads", "activations"]
    for k in range(hist_keys):
        key = f"{families[k % 3]}/{names[k * layers // hist_keys]}"
        for j in range(hist_steps):
            edges = [-1 + 2 * b / 30 for b in range(31)]
            counts = [int(1000 * math.exp(-((b - 15) / (4 + j % 5)) ** 2)) for b in range(30)]
            lines.append(json.dumps({"type": "histogram", "step": j * 10, "key": key, "edges": edges,
                                     "counts": counts, "nonfinite": 1 if j == hist_steps - 3 else 0}))
    for lo in range(0, len(lines), 2000):
        call(port, "POST", f"/api/v1/runs/{run}/records", "\n".join(lines[lo:lo + 2000]),
             ctype="application/x-ndjson")
    return run


def time_page(port, run, requests, warmup):
    samples, body = benchlib.time_gets(lambda: call(port, "GET", f"/runs/{run}", raw=True), requests, warmup)
    return {**benchlib.summary(samples), "bytes": len(body)}


def main():
    ap = benchlib.parser(__doc__, {"series": 50, "points": 100_000, "layers": 64, "watch-steps": 5000,
                                   "hist-keys": 8, "hist-steps": 500, "requests": 20, "warmup": 3})
    ap.add_argument("--out")
    args = ap.parse_args()

    with benchlib.sqlite_server(args.server_bin, "page.db") as (server, port):
        t0 = time.monotonic()
        runs = {"scalars": load_scalars(port, args.series, args.points),
                "watch": load_watch(port, args.layers, args.watch_steps, args.hist_keys, args.hist_steps)}
        print(f"loaded in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        for run in runs.values():
            while not call(port, "GET", f"/api/v1/runs/{run}/findings")["up_to_date"]:
                time.sleep(0.2)
        time.sleep(1)
        results, ok = {}, True
        for name, run in runs.items():
            r = time_page(port, run, args.requests, args.warmup)
            verdict = "PASS" if r["median_ms"] <= TARGETS_MS[name] else "FAIL"
            ok &= verdict == "PASS"
            results[name] = {**r, "target_ms": TARGETS_MS[name], "verdict": verdict}
            print(f"{name}: GET /runs/{{id}} median {r['median_ms']:.1f} ms (min {r['min_ms']:.1f}, "
                  f"p90 {r['p90_ms']:.1f}, max {r['max_ms']:.1f}) of {args.requests}, "
                  f"{r['bytes'] / 1024:.0f} KiB; target <= {TARGETS_MS[name]:.0f} ms {verdict}")
        benchlib.write_results(args.out, args, results)
        sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
