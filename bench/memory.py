#!/usr/bin/env python3
"""Server memory under big answers: exports and full reads of 5M-point runs.

Starts `trainlens serve` on a fresh SQLite file, loads one run of
--keys x --steps points (the export run) and one run with a single key of
--read-points points (the full-read run), then samples the server's RSS
(/proc/PID/status, every 20 ms) while

  * --exporters clients export the export run at once (GET .../export), and
  * --readers clients read the big key in full at once (no max_points),

each client reading the whole body and checking its size. Prints the RSS
before and the peak during each phase, and the wall time. Standard library
only; Linux only (reads /proc).

    python3 bench/memory.py --server-bin target/release/trainlens
"""

import http.client
import json
import sys
import threading
import time

import benchlib


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler:
    """Peak RSS of `pid` while the `with` block runs."""

    def __init__(self, pid):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()

    def __enter__(self):
        self.start = rss_kib(self.pid)
        self.peak = self.start
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.pid))
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_kib(self.pid))


def request(port, method, path, body=None, timeout=600):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"content-type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    return conn, resp


def call(port, method, path, body=None):
    conn, resp = request(port, method, path, body)
    data = resp.read()
    conn.close()
    if resp.status >= 300:
        raise SystemExit(f"{method} {path}: {resp.status} {data[:300]!r}")
    return json.loads(data)


def load(port, name, keys, steps, batch):
    run = call(port, "POST", "/api/v1/runs", json.dumps({"project": "memory", "name": name}))
    for k in range(keys):
        for lo in range(0, steps, batch):
            hi = min(steps, lo + batch)
            body = json.dumps({
                "key": f"series/{k}",
                "steps": list(range(lo, hi)),
                "values": [((s * 7919) % 1000) / 1000.0 for s in range(lo, hi)],
                "times": [1.7e9 + s * 0.1 for s in range(lo, hi)],
            })
            call(port, "POST", f"/api/v1/runs/{run['id']}/scalars", body)
    return run["id"]


def drain(port, path, sizes, i):
    conn, resp = request(port, "GET", path)
    n = 0
    while True:
        piece = resp.read(1 << 16)
        if not piece:
            break
        n += len(piece)
    conn.close()
    sizes[i] = (resp.status, n)


def phase(pid, port, label, path, clients):
    sizes = [None] * clients
    threads = [threading.Thread(target=drain, args=(port, path, sizes, i)) for i in range(clients)]
    t0 = time.monotonic()
    with Sampler(pid) as s:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = time.monotonic() - t0
    statuses = {st for st, _ in sizes}
    body_mb = sizes[0][1] / 1e6
    ok = statuses == {200} and len({n for _, n in sizes}) == 1
    print(f"{label}: {clients} clients, {body_mb:.0f} MB each, {wall:.1f} s; "
          f"RSS {s.start / 1024:.0f} MiB before, peak {s.peak / 1024:.0f} MiB "
          f"(+{(s.peak - s.start) / 1024:.0f}){'' if ok else '  ERROR ' + repr(sizes)}")
    return {"clients": clients, "body_bytes": sizes[0][1], "wall_s": wall,
            "rss_before_mib": s.start / 1024, "rss_peak_mib": s.peak / 1024, "ok": ok}


def main():
    ap = benchlib.parser(__doc__, {"keys": 50, "steps": 100_000, "read-points": 5_000_000, "batch": 100_000,
                                   "exporters": 4, "readers": 3})
    ap.add_argument("--out")
    args = ap.parse_args()

    with benchlib.sqlite_server(args.server_bin, "memory.db") as (server, port):
        t0 = time.monotonic()
        export_run = load(port, "export", args.keys, args.steps, args.batch)
        read_run = load(port, "read", 1, args.read_points, args.batch)
        loaded = time.monotonic() - t0
        # Let the runner diagnose both runs first: the phases measure the
        # answers, not a diagnosis that happens to run at the same time.
        with Sampler(server.pid) as diag:
            for run in (export_run, read_run):
                while not call(port, "GET", f"/api/v1/runs/{run}/findings")["up_to_date"]:
                    time.sleep(0.2)
        time.sleep(1)
        print(f"loaded {args.keys * args.steps + args.read_points:,} points in {loaded:.0f} s; "
              f"diagnosed with a peak RSS of {diag.peak / 1024:.0f} MiB; idle RSS {rss_kib(server.pid) / 1024:.0f} MiB")
        results = {
            "export": phase(server.pid, port, "export", f"/api/v1/runs/{export_run}/export", args.exporters),
            "full_read": phase(server.pid, port, "full read",
                               f"/api/v1/runs/{read_run}/scalars?key=series%2F0", args.readers),
        }
        if args.out:
            with open(args.out, "w") as f:
                json.dump({"args": vars(args), "results": results}, f, indent=2)
        if not all(r["ok"] for r in results.values()):
            sys.exit(1)


if __name__ == "__main__":
    main()
