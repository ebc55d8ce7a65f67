#!/usr/bin/env python3
"""Soak: a long stretch of mixed ingest and page views; RSS must stay flat.

Starts `trainlens serve` on a fresh SQLite file (or uses --url), then for
--duration seconds:

  * --writers threads each train a "run": 1 key x --batch steps per request
    (columnar, with times), over --keys keys, paced together to --rate
    points/s (default: half the ingest benchmark's peak on this machine);
    every --run-points points a writer finishes its run and starts a new one,
    as a sweep does;
  * --viewers threads browse: the runs list, a run's page, a downsampled
    read, its findings; --view-pause seconds apart.

Every second it samples the server's RSS. At the end it prints (and writes
with --out) the achieved rate, errors, ingest and page latency percentiles,
RSS at the start of the measured part (after --warmup s) and its min/max and
slope over the rest. Exit status 1 on any error or an RSS slope above
--max-slope MiB/min. Standard library only; RSS from /proc (Linux).

    python3 bench/soak.py --server-bin target/release/trainlens --duration 1800
"""

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import benchlib


def rss_mib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def slope_per_min(samples):
    """Least-squares slope of (t, v) in v per minute."""
    n = len(samples)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    num = sum((t - mt) * (v - mv) for t, v in samples)
    den = sum((t - mt) ** 2 for t, _ in samples) or 1.0
    return num / den * 60


class Client:
    """One keep-alive connection."""

    def __init__(self, host, port):
        self.host, self.port, self.conn = host, port, None

    def call(self, method, path, body=None):
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=120)
            try:
                headers = {"content-type": "application/json"} if body is not None else {}
                self.conn.request(method, path, body=body, headers=headers)
                resp = self.conn.getresponse()
                data = resp.read()
                return resp.status, data
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.ingest_ms, self.page_ms, self.errors = [], [], []
        self.points = 0
        self.runs = []

    def error(self, what):
        with self.lock:
            self.errors.append(what)
            if len(self.errors) <= 10:
                print(f"error: {what}", file=sys.stderr)


def writer(args, host, port, stats, stop, pace, index):
    c = Client(host, port)
    values = ",".join(f"{((i * 7919) % 1000) / 1000.0}" for i in range(args.batch))
    run = None
    step = 0
    key = 0
    while not stop.is_set():
        if run is None or step * args.keys >= args.run_points:
            if run is not None:
                c.call("POST", f"/api/v1/runs/{run}/finish", json.dumps({"status": "finished"}))
            st, data = c.call("POST", "/api/v1/runs",
                              json.dumps({"project": "soak", "name": f"w{index}-{time.time():.0f}"}))
            if st != 201:
                stats.error(f"create run: {st} {data[:200]!r}")
                time.sleep(1)
                continue
            run = json.loads(data)["id"]
            shown = False  # viewers see a run once its first series exists
            step, key = 0, 0
        pace.acquire(args.batch)
        if stop.is_set():
            break
        steps = ",".join(str(s) for s in range(step, step + args.batch))
        times = ",".join(f"{1.7e9 + s * 0.01:.2f}" for s in range(step, step + args.batch))
        body = f'{{"key":"metric/{key}","steps":[{steps}],"values":[{values}],"times":[{times}]}}'
        t0 = time.monotonic()
        try:
            st, data = c.call("POST", f"/api/v1/runs/{run}/scalars", body)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            stats.error(f"ingest: {e!r}")
            continue
        ms = (time.monotonic() - t0) * 1000
        if st != 200:
            stats.error(f"ingest: {st} {data[:200]!r}")
            continue
        with stats.lock:
            stats.ingest_ms.append(ms)
            stats.points += args.batch
            if not shown:
                stats.runs.append(run)
                shown = True
        key += 1
        if key == args.keys:
            key, step = 0, step + args.batch


def viewer(args, host, port, stats, stop):
    c = Client(host, port)
    i = 0
    while not stop.is_set():
        with stats.lock:
            runs = list(stats.runs[-8:])
        if not runs:
            time.sleep(0.2)
            continue
        run = runs[i % len(runs)]
        i += 1
        for path in ["/", "/?project=soak", f"/runs/{run}",
                     f"/api/v1/runs/{run}/scalars?key=metric%2F0&max_points=1000",
                     f"/api/v1/runs/{run}/findings"]:
            t0 = time.monotonic()
            try:
                st, data = c.call("GET", path)
            except Exception as e:  # noqa: BLE001
                stats.error(f"GET {path}: {e!r}")
                continue
            if st != 200:
                stats.error(f"GET {path}: {st} {data[:200]!r}")
                continue
            with stats.lock:
                stats.page_ms.append((time.monotonic() - t0) * 1000)
        stop.wait(args.view_pause)


class Pace:
    """Shared token bucket: `rate` points per second over all writers."""

    def __init__(self, rate):
        self.rate, self.lock, self.next = rate, threading.Lock(), time.monotonic()

    def acquire(self, n):
        with self.lock:
            now = time.monotonic()
            self.next = max(self.next, now - 1.0) + n / self.rate
            wait = self.next - n / self.rate - now
        if wait > 0:
            time.sleep(wait)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-bin", help="start this trainlens on a fresh SQLite file")
    ap.add_argument("--url", help="or use a running server, e.g. http://127.0.0.1:8080 (RSS needs --pid)")
    ap.add_argument("--pid", type=int, help="the running server's pid, for RSS")
    ap.add_argument("--duration", type=float, default=1800)
    ap.add_argument("--warmup", type=float, default=120)
    ap.add_argument("--rate", type=float, default=1_500_000, help="points/s over all writers")
    ap.add_argument("--writers", type=int, default=4)
    ap.add_argument("--viewers", type=int, default=2)
    ap.add_argument("--keys", type=int, default=25)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--run-points", type=int, default=20_000_000)
    ap.add_argument("--view-pause", type=float, default=0.5)
    ap.add_argument("--max-slope", type=float, default=1.0, help="MiB/min of RSS growth allowed")
    ap.add_argument("--tmp-dir", default=None)
    ap.add_argument("--out")
    args = ap.parse_args()
    if bool(args.server_bin) == bool(args.url):
        ap.error("give --server-bin or --url")

    tmp = tempfile.TemporaryDirectory(dir=args.tmp_dir)
    server = None
    if args.server_bin:
        host = "127.0.0.1"
        server, port = benchlib.serve(args.server_bin, f"sqlite://{tmp.name}/soak.db",
                                      stderr=open(f"{tmp.name}/server.log", "w"), host=host)
        pid = server.pid
    else:
        u = args.url.split("//", 1)[-1].rstrip("/")
        host, _, p = u.partition(":")
        port, pid = int(p or 80), args.pid
    try:
        benchlib.wait_healthy(port, host=host)
        stats, stop, pace = Stats(), threading.Event(), Pace(args.rate)
        threads = [threading.Thread(target=writer, args=(args, host, port, stats, stop, pace, i))
                   for i in range(args.writers)]
        threads += [threading.Thread(target=viewer, args=(args, host, port, stats, stop))
                    for _ in range(args.viewers)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        rss = []
        last_report = t0
        while (now := time.monotonic()) - t0 < args.duration:
            if server is not None and server.poll() is not None:
                stats.error(f"the server exited with {server.returncode}")
                break
            if pid and (r := rss_mib(pid)) is not None:
                rss.append((now - t0, r))
            if now - last_report >= 60:
                last_report = now
                with stats.lock:
                    print(f"{(now - t0) / 60:.0f} min: {stats.points / (now - t0):,.0f} points/s, "
                          f"RSS {rss[-1][1] if rss else float('nan'):.0f} MiB, {len(stats.errors)} errors",
                          file=sys.stderr)
            time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        measured = [(t, v) for t, v in rss if t >= args.warmup]
        result = {
            "duration_s": wall,
            "points": stats.points,
            "points_per_s": stats.points / wall,
            "target_rate": args.rate,
            "errors": len(stats.errors),
            "first_errors": stats.errors[:10],
            "ingest_requests": len(stats.ingest_ms),
            "ingest_ms": {p: percentile(stats.ingest_ms, q) for p, q in
                          [("p50", 50), ("p99", 99), ("max", 100)]},
            "page_requests": len(stats.page_ms),
            "page_ms": {p: percentile(stats.page_ms, q) for p, q in
                        [("p50", 50), ("p99", 99), ("max", 100)]},
            "rss_mib": {
                "at_warmup": measured[0][1] if measured else None,
                "min": min((v for _, v in measured), default=None),
                "max": max((v for _, v in measured), default=None),
                "end": measured[-1][1] if measured else None,
                "slope_per_min": slope_per_min(measured),
            },
            "database_bytes": sum(os.path.getsize(os.path.join(tmp.name, f))
                                  for f in os.listdir(tmp.name) if f.startswith("soak.db")),
        }
        print(json.dumps(result, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"args": vars(args), "result": result}, f, indent=2)
        bad = result["errors"] > 0 or result["rss_mib"]["slope_per_min"] > args.max_slope
        sys.exit(1 if bad else 0)
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
        tmp.cleanup()


if __name__ == "__main__":
    main()
