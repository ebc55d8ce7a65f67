#!/usr/bin/env python3
"""Generates the diagnosis benchmark's runs into a directory outside the repo.

    python bench/diagnosis/gen.py /tmp/diagbench [--split tune|heldout|all] [--no-torch] [--jobs 2]

Writes ``OUT/<split>/<run>.jsonl`` (record format), ``OUT/<split>/labels.json``
(``expect``/``allow`` per run, as the fixtures') and ``OUT/<split>/meta.json``
(architecture, habit, fault, seed, trainer, true onset, run length, facts).
Deterministic: the same command gives the same runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Dict, List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import recipes  # noqa: E402
import runtrace  # noqa: E402


def _sim(job: Dict[str, Any]):
    import sim

    if job["trainer"] == "sim-rnn":
        return sim.train_rnn(job["name"], job["spec"], job["seed"])
    return sim.train_mlp(job["name"], job["spec"], job["seed"])


def _torch(jobs: List[Dict[str, Any]]):
    import torch_runs

    return torch_runs.run_all(jobs)


def _grads_style(records: List[Dict[str, Any]]) -> Any:
    keys = {r["key"] for r in records if r.get("type") == "scalar"}
    if any(k.startswith("grad_norm/") for k in keys):
        return "layers"
    if "grad_norm" in keys:
        return "global"
    return None


def _grad_growth(records: List[Dict[str, Any]]) -> float:
    """The largest peak/first ratio of a logged gradient-norm series."""
    series: Dict[str, List[float]] = {}
    for r in records:
        if r.get("type") == "scalar" and (r["key"] == "grad_norm" or r["key"].startswith("grad_norm/")) \
                and isinstance(r["value"], (int, float)):
            series.setdefault(r["key"], []).append(float(r["value"]))
    best = 0.0
    for v in series.values():
        first = next((x for x in v if x > 0), None)
        if first:
            best = max(best, max(v) / first)
    return best


def _has_acc(records: List[Dict[str, Any]]) -> bool:
    return any(r.get("type") == "scalar" and "acc" in r["key"] for r in records)


def emit(tr, job: Dict[str, Any], out_dir: str, labels: Dict[str, Any], meta: Dict[str, Any]) -> None:
    for habit in runtrace.HABITS:
        records = runtrace.write(tr, habit, job["seed"])
        name = f"{tr.name}--{habit}"
        if records and records[0].get("type") == "run":
            records[0] = {**records[0], "name": name}
        runtrace.dump(records, os.path.join(out_dir, f"{name}.jsonl"))
        grads = _grads_style(records)
        exp, allow = recipes.label(job["fault"], job["arch"], habit, grads, tr.facts,
                                   _grad_growth(records), _has_acc(records))
        labels[name] = {"expect": sorted(exp), "allow": sorted(allow)}
        meta[name] = {"arch": job["arch"], "habit": habit, "grads": grads, "fault": job["fault"],
                      "trainer": job["trainer"], "seed": job["seed"],
                      "onset": tr.facts.get("onset"), "steps": tr.facts.get("steps"),
                      "facts": tr.facts}


def generate(out: str, split: str, torch_runs: bool, workers: int, only: str = "") -> int:
    d = os.path.join(out, split)
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        if f.endswith(".jsonl"):
            os.remove(os.path.join(d, f))
    jobs = [j for j in recipes.jobs(split, torch_runs) if only in j["name"]]
    sims = [j for j in jobs if j["trainer"] != "torch"]
    torch_jobs = [j for j in jobs if j["trainer"] == "torch"]
    labels: Dict[str, Any] = {}
    meta: Dict[str, Any] = {}
    t0 = time.time()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        # Torch runs in their own worker(s), started first: they are the
        # slowest; the numpy runs fill the other worker.
        halves = [torch_jobs[i::max(1, workers - 1)] for i in range(max(1, workers - 1))] if torch_jobs else []
        torch_futs = [(chunk, pool.submit(_torch, chunk)) for chunk in halves if chunk]
        sim_futs = [(j, pool.submit(_sim, j)) for j in sims]
        for j, fut in sim_futs:
            emit(fut.result(), j, d, labels, meta)
        for chunk, fut in torch_futs:
            for j, tr in zip(chunk, fut.result()):
                emit(tr, j, d, labels, meta)
    with open(os.path.join(d, "labels.json"), "w") as f:
        json.dump(dict(sorted(labels.items())), f, indent=1)
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(dict(sorted(meta.items())), f, indent=1, default=float)
    print(f"{split}: {len(labels)} runs from {len(jobs)} trainings in {time.time() - t0:.0f} s",
          file=sys.stderr)
    return len(labels)


def relabel(out: str, split: str) -> None:
    """Recomputes ``labels.json`` from ``meta.json`` and the recordings (after
    a change of ``recipes.label``), without training again."""
    d = os.path.join(out, split)
    meta = json.load(open(os.path.join(d, "meta.json")))
    labels = {}
    for name, m in sorted(meta.items()):
        with open(os.path.join(d, f"{name}.jsonl")) as f:
            records = [json.loads(line) for line in f if line.strip()]
        exp, allow = recipes.label(m["fault"], m["arch"], m["habit"], m["grads"], m["facts"],
                                   _grad_growth(records), _has_acc(records))
        labels[name] = {"expect": sorted(exp), "allow": sorted(allow)}
    with open(os.path.join(d, "labels.json"), "w") as f:
        json.dump(labels, f, indent=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--split", default="all", choices=["tune", "heldout", "all"])
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="", help="only the trainings whose name contains this")
    ap.add_argument("--relabel", action="store_true",
                    help="recompute labels.json of the runs in OUT (no training)")
    a = ap.parse_args()
    if os.path.abspath(a.out).startswith(os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))):
        ap.error("write the runs outside the repository (e.g. /tmp/diagbench)")
    splits = ["tune", "heldout"] if a.split == "all" else [a.split]
    if a.relabel:
        for s in splits:
            relabel(a.out, s)
        return
    for s in splits:
        generate(a.out, s, not a.no_torch, max(2, a.jobs), a.only)


if __name__ == "__main__":
    main()
