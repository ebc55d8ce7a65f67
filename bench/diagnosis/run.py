#!/usr/bin/env python3
"""The diagnosis benchmark in one command: generate the runs, run the real
detectors over every one, score them.

    python bench/diagnosis/run.py /tmp/diagbench            # generate + score
    python bench/diagnosis/run.py /tmp/diagbench --no-gen   # score what is there
    python bench/diagnosis/run.py /tmp/diagbench --split heldout

The detectors run through the ignored ``score_directory`` tool of
``tests/diagnostics_fixtures.rs`` (``cargo test --test diagnostics_fixtures
-- --ignored score_directory``, with ``DIAG_DIR``, ``PREDICTIONS_OUT`` and
``FINDINGS_OUT``), i.e. ``trainlens::diagnostics::diagnose`` on
``RunView::from_records`` of each recording — what the server runs.

Scoring follows ``shared/tools/score.py``: a raised kind (warning or worse) is
a true positive when expected, harmless when allowed, a false alarm
otherwise. Printed per split: recall, precision and healthy runs with a false
alarm per architecture and per habit, the misses and false alarms, onset
accuracy on runs whose fault starts mid-run (within 5% of the run's length),
and fixes that contradict the run's evidence.

How soon the live diagnosis warns when the same runs stream in at 100
steps/s through the API is ``delay.py``'s (see bench/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections import defaultdict
from typing import Any, Dict, List, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
#: shared/tools/score.py, for its one-line verdict (next to the repo, or
#: $TRAINLENS_SCORE_PY); the tables below apply the same rules.
SCORE_PY = next((p for p in (os.environ.get("TRAINLENS_SCORE_PY"),
                             os.path.join(REPO, "..", "shared", "tools", "score.py"),
                             "/work/shared/tools/score.py") if p and os.path.exists(p)), "")


def diagnose(split_dir: str) -> Tuple[Dict[str, List[str]], Dict[str, Any]]:
    preds = os.path.join(split_dir, "predictions.json")
    finds = os.path.join(split_dir, "findings.json")
    env = dict(os.environ, DIAG_DIR=split_dir, PREDICTIONS_OUT=preds, FINDINGS_OUT=finds)
    cmd = ["cargo", "test", "--quiet", "--test", "diagnostics_fixtures", "--", "--ignored",
           "score_directory", "--exact"]
    r = subprocess.run(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       text=True)
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-4000:] + r.stderr[-4000:])
        raise SystemExit("the detectors failed")
    with open(preds) as f, open(finds) as g:
        return json.load(f), json.load(g)


class Tally:
    def __init__(self) -> None:
        self.tp = self.fn = self.fp = 0
        self.healthy = self.healthy_alarm = 0
        self.runs = 0

    def add(self, exp, allow, got, healthy: bool) -> None:
        self.runs += 1
        self.tp += len(exp & got)
        self.fn += len(exp - got)
        false = got - exp - allow
        self.fp += len(false)
        if healthy:
            self.healthy += 1
            self.healthy_alarm += bool(got - allow)

    def row(self) -> str:
        rec = self.tp / (self.tp + self.fn) if self.tp + self.fn else 1.0
        prec = self.tp / (self.tp + self.fp) if self.tp + self.fp else 1.0
        return (f"{self.runs:5d} runs  recall {rec:.3f} ({self.tp}/{self.tp + self.fn})  "
                f"precision {prec:.3f} ({self.tp}/{self.tp + self.fp})  "
                f"healthy flagged {self.healthy_alarm}/{self.healthy}")


LR_UP = ("Increase the learning rate", "higher learning rate")
REGULARISE = ("Add regularisation", "Regularise more", "Reduce regularisation")
CAPACITY_UP = ("Increase capacity", "wider/more layers")


def contradictions(diag: Dict[str, Any]) -> List[str]:
    """Fixes that contradict the findings of the same run."""
    out = []
    raised = {f["kind"]: f for f in diag["findings"] if f["severity"] != "info"}
    unstable = {"divergence", "exploding_gradients", "dead_relu"} & set(raised)
    for f in raised.values():
        fixes = " ".join(f.get("fixes", []))
        if unstable and any(s in fixes for s in LR_UP):
            out.append(f"{f['kind']} raises the LR after {sorted(unstable)}")
        if f["kind"] == "underfitting" and any(s in fixes for s in ("Add regularisation", "Regularise more")):
            out.append("underfitting told to regularise")
        if f["kind"] == "overfitting" and any(s in fixes for s in CAPACITY_UP):
            out.append("overfitting told to add capacity")
    return out


def score(split_dir: str, verbose: bool) -> None:
    labels = json.load(open(os.path.join(split_dir, "labels.json")))
    meta = json.load(open(os.path.join(split_dir, "meta.json")))
    preds, finds = diagnose(split_dir)
    total, by_arch, by_habit, by_kind = Tally(), defaultdict(Tally), defaultdict(Tally), defaultdict(lambda: [0, 0])
    by_cell = defaultdict(Tally)
    problems, onsets, contra = [], [], []
    for run, lab in sorted(labels.items()):
        m = meta[run]
        exp, allow = set(lab["expect"]), set(lab["allow"])
        got = set(preds.get(run, []))
        healthy = m["fault"] == "healthy"
        for t in (total, by_arch[m["arch"]], by_habit[m["habit"]], by_cell[(m["arch"], m["habit"])]):
            t.add(exp, allow, got, healthy)
        for k in exp:
            by_kind[k][1] += 1
            by_kind[k][0] += k in got
        miss, false = exp - got, got - exp - allow
        if miss or false:
            problems.append(f"  {run:60s} missed={sorted(miss)} false={sorted(false)}")
        diag = finds.get(run, {"findings": []})
        for c in contradictions(diag):
            contra.append(f"  {run}: {c}")
        onset, steps = m.get("onset"), m.get("steps")
        if onset is not None and steps:
            for f in diag["findings"]:
                if f["kind"] in exp and f["kind"] in got and f.get("onset_step") is not None:
                    err = abs(f["onset_step"] - onset)
                    onsets.append((run, f["kind"], onset, f["onset_step"], err <= 0.05 * steps))
    name = os.path.basename(split_dir.rstrip("/"))
    print(f"\n## {name}: {total.row()}")
    print("  by architecture:")
    for a, t in sorted(by_arch.items()):
        print(f"    {a:12s} {t.row()}")
    print("  by habit:")
    for h, t in sorted(by_habit.items()):
        print(f"    {h:12s} {t.row()}")
    if verbose:
        print("  by architecture × habit:")
        for (a, h), t in sorted(by_cell.items()):
            print(f"    {a:12s} {h:7s} {t.row()}")
    print("  by kind (hit/expected):")
    for k, (hit, n) in sorted(by_kind.items()):
        print(f"    {k:26s} {hit}/{n}")
    if onsets:
        ok = sum(o[4] for o in onsets)
        print(f"  onset within 5% of the run on mid-run faults: {ok}/{len(onsets)}")
        for o in onsets:
            if not o[4]:
                print(f"    {o[0]} {o[1]}: true {o[2]}, found {o[3]}")
    print(f"  fixes contradicting the evidence: {len(contra)}")
    for c in contra:
        print(c)
    if problems:
        print(f"  misses and false alarms ({len(problems)} runs):")
        for p in problems:
            print(p)
    if SCORE_PY:
        r = subprocess.run([sys.executable, SCORE_PY, os.path.join(split_dir, "labels.json"),
                            os.path.join(split_dir, "predictions.json")],
                           stdout=subprocess.PIPE, text=True)
        print("  score.py: " + r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--split", default="all", choices=["tune", "heldout", "all"])
    ap.add_argument("--no-gen", action="store_true", help="score the runs already in OUT")
    ap.add_argument("--no-torch", action="store_true")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-v", "--verbose", action="store_true", help="also architecture × habit")
    a = ap.parse_args()
    splits = ["tune", "heldout"] if a.split == "all" else [a.split]
    if not a.no_gen:
        args = [sys.executable, os.path.join(HERE, "gen.py"), a.out, "--split", a.split,
                "--jobs", str(a.jobs)] + (["--no-torch"] if a.no_torch else [])
        subprocess.run(args, check=True)
    for s in splits:
        score(os.path.join(a.out, s), a.verbose)


if __name__ == "__main__":
    main()
