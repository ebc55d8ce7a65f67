#!/usr/bin/env python3
"""Live pages: the delay from posting a point to its event reaching an open page.

For each scenario, starts `trainlens serve` (one, or two replicas on the
same database) on a fresh SQLite file — or, with --pg-url, a throw-away
PostgreSQL database created and dropped through psql — creates a running
run through replica A, opens the run page's event stream
(`GET /runs/{id}/events`) on the last replica, plus --idle-streams more
(other pages open meanwhile: the runs table's stream), then --posts times:
waits a random fraction of the poll interval (so posts land anywhere
between two polls, as a training script's do), sends one point to A
(`POST /api/v1/runs/{id}/scalars`, a keep-alive connection) and waits for
the `run` event whose data version is the post's. The delay is from
sending the POST to reading the end of that event, on this machine's
monotonic clock; the POST's own latency is reported beside it. Prints
median, p90 and max per scenario (milliseconds) and writes --out as JSON.

With the default poll of 1 s the delay is the POST, the wait for the next
poll (uniform over one interval: ~500 ms median, ~900 ms p90) and one read;
`--poll-ms` is what `trainlens serve --live-poll-ms` sets. Standard library
only.

    cargo build --release
    python3 bench/live_delay.py --server-bin target/release/trainlens [--pg-url URL]
"""

import contextlib
import http.client
import json
import os
import queue
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import benchlib


def start(server_bin, url, poll_ms, log):
    """`trainlens serve` on a free port with the live poll set; its port."""
    port = benchlib.free_port()
    proc = subprocess.Popen(
        [server_bin, "serve", "--bind", f"127.0.0.1:{port}", "--database-url", url,
         "--live-poll-ms", str(poll_ms)],
        stdout=subprocess.DEVNULL, stderr=log)
    if not benchlib.wait_healthy(port, seconds=30):
        proc.kill()
        sys.exit(f"the server on {url} did not become healthy")
    return proc, port


def call(conn, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers=headers)
    r = conn.getresponse()
    raw = r.read()
    if r.status >= 300:
        sys.exit(f"{method} {path}: {r.status} {raw[:300]!r}")
    return json.loads(raw) if raw else None


class Stream:
    """An event stream read by a thread: each event's arrival time (the
    monotonic clock when its closing blank line was read) and data, in a
    queue."""

    def __init__(self, port, path):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.conn.request("GET", path, headers={"accept": "text/event-stream"})
        self.resp = self.conn.getresponse()
        if self.resp.status != 200:
            sys.exit(f"GET {path}: {self.resp.status} {self.resp.read()[:300]!r}")
        self.events = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        event, data = None, ""
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    return
                line = line.decode().rstrip("\r\n")
                if line == "":
                    if event is not None:
                        self.events.put((time.perf_counter(), event, json.loads(data or "null")))
                    event, data = None, ""
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data += line[5:].strip()
        except Exception:  # closed under the reader at the end
            return

    def wait_version(self, version, timeout):
        """The arrival time of the first `run` event with a data version of
        at least `version`."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                sys.exit(f"no event for data version {version} within {timeout} s")
            try:
                at, event, data = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if event == "run" and data["version"] >= version:
                return at, data

    def close(self):
        with contextlib.suppress(Exception):
            self.conn.sock.shutdown(2)
        self.conn.close()


def scenario(server_bin, url, replicas, args, log):
    servers = [start(server_bin, url, args.poll_ms, log) for _ in range(replicas)]
    ports = [p for _, p in servers]
    streams = []
    try:
        a = http.client.HTTPConnection("127.0.0.1", ports[0], timeout=60)
        run = call(a, "POST", "/api/v1/runs", {"project": "bench", "name": f"live-{uuid.uuid4().hex[:6]}"})
        rid = run["id"]
        call(a, "POST", f"/api/v1/runs/{rid}/scalars", {"key": "train/loss", "steps": [0], "values": [1.0]})
        for _ in range(args.idle_streams):
            streams.append(Stream(ports[-1], "/events/runs?project=other"))
        watch = Stream(ports[-1], f"/runs/{rid}/events")
        streams.append(watch)
        _, first = watch.wait_version(1, 30)
        version = first["version"]
        delays, posts = [], []
        for i in range(1, args.posts + 1):
            time.sleep(random.uniform(0, args.poll_ms / 1000.0) + 0.05)
            t0 = time.perf_counter()
            call(a, "POST", f"/api/v1/runs/{rid}/scalars",
                 {"key": "train/loss", "steps": [i], "values": [1.0 / (1 + i)]})
            t1 = time.perf_counter()
            at, data = watch.wait_version(version + 1, 30)
            version = data["version"]
            delays.append((at - t0) * 1000)
            posts.append((t1 - t0) * 1000)
        return delays, posts
    finally:
        for s in streams:
            s.close()
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            t = time.monotonic()
            proc.wait(60)
            if time.monotonic() - t > 10:
                print("warning: a server took over 10 s to stop", file=sys.stderr)


def summary(ms):
    s = sorted(ms)
    return {"median_ms": statistics.median(s), "p90_ms": s[int(0.9 * (len(s) - 1))],
            "min_ms": s[0], "max_ms": s[-1], "samples_ms": ms}


def main():
    ap = benchlib.parser(__doc__, {"posts": 40, "replicas": 0})
    ap.add_argument("--poll-ms", type=int, default=1000, help="trainlens serve --live-poll-ms")
    ap.add_argument("--idle-streams", type=int, default=50,
                    help="other event streams open on the replica the page's stream is on")
    ap.add_argument("--pg-url", help="an existing PostgreSQL database to create throw-away ones beside")
    ap.add_argument("--out", help="write the results as JSON here")
    args = ap.parse_args()
    counts = [args.replicas] if args.replicas else [1, 2]
    backends = ["sqlite"] + (["postgres"] if args.pg_url else [])
    results = {}
    print(f"| backend | replicas | POST → event: median ms | p90 | max | POST alone: median ms | "
          f"poll {args.poll_ms} ms, {args.posts} posts, {args.idle_streams} other streams open |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        log = open(f"{tmp}/server.log", "w")
        for backend in backends:
            for n in counts:
                pg_db = None
                if backend == "postgres":
                    pg_db = f"trainlens_bench_{uuid.uuid4().hex[:12]}"
                    subprocess.run(["psql", args.pg_url, "-qc", f"CREATE DATABASE {pg_db}"], check=True)
                    url = args.pg_url.rsplit("/", 1)[0] + "/" + pg_db
                else:
                    url = f"sqlite://{tmp}/live-{n}.db"
                try:
                    delays, posts = scenario(args.server_bin, url, n, args, log)
                finally:
                    if pg_db:
                        subprocess.run(["psql", args.pg_url, "-qc", f"DROP DATABASE {pg_db} WITH (FORCE)"])
                d, p = summary(delays), summary(posts)
                results[f"{backend}, {n} replica{'s' if n > 1 else ''}"] = {"delay": d, "post": p}
                print(f"| {backend} | {n} | {d['median_ms']:.0f} | {d['p90_ms']:.0f} | {d['max_ms']:.0f} | "
                      f"{p['median_ms']:.1f} | |", flush=True)
    print(f"\nmachine: {os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
