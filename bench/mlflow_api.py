#!/usr/bin/env python3
"""The MLflow tracking API under load (docs/mlflow.md). Not named mlflow.py:
that would shadow the mlflow package.

Starts `trainlens serve` on a fresh database (SQLite by default, or
--database-url) and measures, each as the median of --reps repetitions:

  * log-batch ingest: --clients concurrent clients, each with its own
    keep-alive connection and run, POST `runs/log-batch` of 1000 metrics
    (--keys keys x 1000/--keys steps) until each sent --points points;
    points/s = all points / wall time (clock from the release of all clients
    to the last answer);
  * get-history of --history-points points of one key: one unpaged
    `GET metrics/get-history` over raw HTTP, until the body arrived
    (`get_history_body_s`) and until it was parsed (`get_history_raw_s`),
    and the mlflow client's `get_metric_history` (pages of 25 000);
  * the mlflow client's synchronous loop: `mlflow.log_metrics({...}, step=i)`
    for --client-steps steps, steps/s.

The ingest and history parts need only the standard library; the client
parts need `mlflow` (mlflow-skinny) and are skipped, saying so, without it.

With --mlflow-bin (the `mlflow` command of a virtualenv with the full
`mlflow` package: `python3 -m venv V && V/bin/pip install mlflow`), the same
figures are then measured against `mlflow server` on a fresh SQLite file in
the same run (its ingest with --mlflow-points per client: MLflow's rate does
not depend on the volume, and 800k points take it over a minute), and a
side-by-side table gives trainlens's factor over MLflow.

    cargo build --release
    python3 bench/mlflow_api.py --server-bin target/release/trainlens \
        [--mlflow-bin V/bin/mlflow]
"""

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import benchlib

API = "/api/2.0/mlflow"


class Server:
    def __init__(self, binary, database_url):
        self.tmp = tempfile.TemporaryDirectory(prefix="trainlens-mlflow-bench-")
        url = database_url or f"sqlite://{self.tmp.name}/bench.db"
        self.log = open(os.path.join(self.tmp.name, "server.log"), "w")
        self.proc, self.port = benchlib.serve(binary, url, stdout=self.log, stderr=subprocess.STDOUT)
        if not benchlib.wait_healthy(self.port, seconds=60, pause=0.1):
            raise SystemExit("the server did not start")

    @property
    def uri(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)
        self.log.close()
        self.tmp.cleanup()


class MlflowServer(Server):
    """`mlflow server` (its defaults: several workers) on a fresh SQLite file."""

    def __init__(self, mlflow_bin):
        self.tmp = tempfile.TemporaryDirectory(prefix="mlflow-bench-")
        self.log = open(os.path.join(self.tmp.name, "server.log"), "w")
        self.port = benchlib.free_port()
        self.proc = subprocess.Popen(
            [mlflow_bin, "server", "--host", "127.0.0.1", "--port", str(self.port),
             "--backend-store-uri", f"sqlite:///{self.tmp.name}/mlflow.db",
             "--artifacts-destination", os.path.join(self.tmp.name, "artifacts")],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while not self.answers():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit("mlflow server did not start")
            time.sleep(0.5)

    def answers(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            c.request("GET", "/health")
            return c.getresponse().status == 200
        except OSError:
            return False

    def stop(self):
        # Its workers are children: stop the whole session.
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        self.proc.wait(60)
        self.log.close()
        self.tmp.cleanup()


def call(conn, path, body):
    data = json.dumps(body)
    conn.request("POST", f"{API}/{path}", data, {"content-type": "application/json"})
    r = conn.getresponse()
    out = r.read()
    if r.status != 200:
        raise SystemExit(f"{path}: {r.status} {out[:300]!r}")
    return json.loads(out)


def new_run(port, experiment):
    c = http.client.HTTPConnection("127.0.0.1", port)
    try:
        e = call(c, "experiments/create", {"name": experiment})["experiment_id"]
    except SystemExit:
        # A GET, as MLflow's server takes it only so.
        c.request("GET", f"{API}/experiments/get-by-name?experiment_name={experiment}")
        r = c.getresponse()
        e = json.loads(r.read())["experiment"]["experiment_id"]
    run = call(c, "runs/create", {"experiment_id": e, "start_time": int(time.time() * 1000)})
    return run["run"]["info"]["run_id"]


def batches(run, points, keys, t0):
    """log-batch bodies of 1000 metrics: `keys` keys x (1000 / keys) steps."""
    per = 1000 // keys
    step = 0
    sent = 0
    while sent < points:
        metrics = [
            {"key": f"m{k}", "value": 1.0 / (s + 1) + k, "timestamp": t0 + s, "step": s}
            for s in range(step, step + per)
            for k in range(keys)
        ]
        yield json.dumps({"run_id": run, "metrics": metrics})
        step += per
        sent += len(metrics)


def ingest(server, args, points, rep):
    runs = [new_run(server.port, f"ingest-{rep}") for _ in range(args.clients)]
    bodies = [list(batches(r, points, args.keys, 1_700_000_000_000)) for r in runs]
    conns = [http.client.HTTPConnection("127.0.0.1", server.port) for _ in runs]
    for c in conns:
        c.connect()
    go = threading.Barrier(args.clients + 1)
    errors = []

    def client(i):
        go.wait()
        try:
            for b in bodies[i]:
                conns[i].request("POST", f"{API}/runs/log-batch", b, {"content-type": "application/json"})
                r = conns[i].getresponse()
                out = r.read()
                if r.status != 200:
                    errors.append(f"{r.status} {out[:200]!r}")
                    return
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for t in threads:
        t.start()
    go.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"ingest failed: {errors[0]}")
    total = sum(len(json.loads(b)["metrics"]) for bs in bodies for b in bs)
    return total / wall


def history_run(server, n):
    run = new_run(server.port, "history")
    c = http.client.HTTPConnection("127.0.0.1", server.port)
    for lo in range(0, n, 1000):
        metrics = [
            {"key": "loss", "value": 1.0 / (s + 1), "timestamp": 1_700_000_000_000 + s, "step": s}
            for s in range(lo, min(n, lo + 1000))
        ]
        call(c, "runs/log-batch", {"run_id": run, "metrics": metrics})
    return run


def raw_history(server, run, n):
    """Seconds until the whole body of an unpaged get-history arrived, and
    until it was parsed too (Python's json.loads of 100k objects is a large
    share of the second)."""
    c = http.client.HTTPConnection("127.0.0.1", server.port)
    t0 = time.perf_counter()
    c.request("GET", f"{API}/metrics/get-history?run_id={run}&metric_key=loss")
    r = c.getresponse()
    raw = r.read()
    received = time.perf_counter() - t0
    body = json.loads(raw)
    parsed = time.perf_counter() - t0
    assert len(body["metrics"]) == n, len(body["metrics"])
    return received, parsed


def median(xs):
    return statistics.median(xs)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server-bin", required=True)
    p.add_argument("--database-url", help="default: a fresh SQLite file (PostgreSQL: an empty database)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--points", type=int, default=200_000, help="points per ingest client")
    p.add_argument("--keys", type=int, default=10, help="keys per log-batch request")
    p.add_argument("--history-points", type=int, default=100_000)
    p.add_argument("--client-steps", type=int, default=500)
    p.add_argument("--mlflow-bin", help="also measure `mlflow server` (this `mlflow` command)")
    p.add_argument("--mlflow-points", type=int, default=20_000, help="points per ingest client for MLflow")
    p.add_argument("--out", help="write the figures as JSON here")
    args = p.parse_args()

    figures = measure(Server(args.server_bin, args.database_url), args, args.points, "trainlens")
    mlflow_figures = None
    if args.mlflow_bin:
        mlflow_figures = measure(MlflowServer(args.mlflow_bin), args, args.mlflow_points, "mlflow")
    report(figures, mlflow_figures, args)


def measure(server, args, points, name):
    """Every figure of `server`, `points` points per ingest client."""
    figures = {}
    try:
        rates = []
        for rep in range(args.reps):
            rates.append(ingest(server, args, points, rep))
            print(f"{name}: ingest rep {rep}: {rates[-1]:,.0f} points/s", file=sys.stderr)
        figures["log_batch_ingest_points_per_s"] = {"median": median(rates), "runs": rates}

        run = history_run(server, args.history_points)
        raw_history(server, run, args.history_points)  # warm-up
        both = [raw_history(server, run, args.history_points) for _ in range(args.reps)]
        for i, name in enumerate(["get_history_body_s", "get_history_raw_s"]):
            times = [b[i] for b in both]
            figures[name] = {"median": median(times), "runs": times}

        try:
            import mlflow
            from mlflow.tracking import MlflowClient
        except ImportError as e:
            print(f"mlflow is not importable ({e}): skipping the client figures", file=sys.stderr)
        else:
            os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
            mlflow.set_tracking_uri(server.uri)
            client = MlflowClient()
            times = []
            for _ in range(args.reps):
                t0 = time.perf_counter()
                h = client.get_metric_history(run, "loss")
                times.append(time.perf_counter() - t0)
                assert len(h) == args.history_points, len(h)
            figures["get_history_client_s"] = {"median": median(times), "runs": times}

            mlflow.set_experiment("client-loop")
            rates = []
            for _ in range(args.reps):
                with mlflow.start_run():
                    t0 = time.perf_counter()
                    for i in range(args.client_steps):
                        mlflow.log_metrics({"loss": 1.0 / (i + 1), "acc": i / args.client_steps}, step=i)
                    rates.append(args.client_steps / (time.perf_counter() - t0))
            figures["client_sync_log_metrics_steps_per_s"] = {"median": median(rates), "runs": rates}
    finally:
        server.stop()
    return figures


def report(figures, mlflow_figures, args):
    figures["setup"] = {
        "backend": "postgres" if (args.database_url or "").startswith("postgres") else "sqlite",
        "clients": args.clients,
        "points_per_client": args.points,
        "history_points": args.history_points,
        "client_steps": args.client_steps,
        "reps": args.reps,
        "nproc": os.cpu_count(),
    }
    print("| figure | median | runs |\n|---|---|---|")
    for name, f in figures.items():
        if name != "setup":
            print(f"| {name} | {f['median']:,.3f} | {', '.join(f'{x:,.3f}' for x in f['runs'])} |")
    if mlflow_figures is not None:
        figures["mlflow"] = mlflow_figures
        figures["setup"]["mlflow_points_per_client"] = args.mlflow_points
        figures["trainlens_over_mlflow"] = {}
        print("\n| figure | trainlens | MLflow | trainlens's factor |\n|---|---|---|---|")
        for name, f in mlflow_figures.items():
            ours, theirs = figures[name]["median"], f["median"]
            # Rates (…_per_s): more is better; times (…_s): less is better.
            time_like = name.endswith("_s") and not name.endswith("_per_s")
            factor = theirs / ours if time_like else ours / theirs
            figures["trainlens_over_mlflow"][name] = factor
            print(f"| {name} | {ours:,.3f} | {theirs:,.3f} | {factor:,.1f}× |")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
