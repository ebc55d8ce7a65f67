"""What the bench scripts share: a free port, a `trainlens serve` child on
it, waiting until a server answers /healthz, a JSON connection to it,
loading it from several clients, waiting for the diagnosis to catch up,
timing a page and writing the results. Standard library only.

The scripts run as `python3 bench/<script>.py`, so this folder is on their
import path."""

import argparse
import contextlib
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time


def parser(doc, ints):
    """An argument parser that shows `doc`, with a required --server-bin and
    an int option --NAME for each NAME: default of `ints`."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server-bin", required=True)
    for name, default in ints.items():
        ap.add_argument(f"--{name}", type=int, default=default)
    return ap


def free_port():
    """A port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(server_bin, database_url, stdout=subprocess.DEVNULL, stderr=None, host="127.0.0.1"):
    """Starts `server_bin serve` on a free port of `host` with `database_url`;
    returns the process and the port (it may not answer yet: see
    :func:`wait_healthy`)."""
    port = free_port()
    proc = subprocess.Popen(
        [server_bin, "serve", "--bind", f"{host}:{port}", "--database-url", database_url],
        stdout=stdout, stderr=stderr)
    return proc, port


def healthy(port, host="127.0.0.1", timeout=2.0):
    """Whether the server at `host`:`port` answers GET /healthz with 200."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except (http.client.HTTPException, OSError):
        return False
    finally:
        conn.close()


def wait_healthy(port, seconds=10.0, pause=0.05, host="127.0.0.1"):
    """Polls :func:`healthy` every `pause` s for up to `seconds`; says whether
    the server answered."""
    deadline = time.monotonic() + seconds
    while True:
        if healthy(port, host):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)


@contextlib.contextmanager
def sqlite_server(server_bin, db_name):
    """`server_bin serve` on a fresh SQLite file `db_name` in a temporary
    folder (its stderr in `server.log` there), once it answers /healthz (or
    after 10 s); yields the process and its port. On exit the server gets
    SIGTERM (and 60 s to stop) and the folder is removed."""
    with tempfile.TemporaryDirectory() as tmp:
        server, port = serve(server_bin, f"sqlite://{tmp}/{db_name}", stderr=open(f"{tmp}/server.log", "w"))
        try:
            wait_healthy(port)
            yield server, port
        finally:
            server.terminate()
            server.wait(60)


class Conn:
    """A kept-alive HTTP connection to the server on `port` that sends JSON
    bodies; a status of 300 or more ends the script."""

    def __init__(self, port):
        self.c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json"} if data else {}
        self.c.request(method, path, body=data, headers=headers)
        r = self.c.getresponse()
        raw = r.read()
        if r.status >= 300:
            sys.exit(f"{method} {path}: {r.status} {raw[:300]!r}")
        return raw

    def json(self, method, path, body=None):
        return json.loads(self.call(method, path, body))


def in_parallel(port, count, clients, job):
    """`job(conn, i)` for each i below `count`, spread over `clients`
    threads, each with a `Conn` of its own."""
    def worker(c):
        conn = Conn(port)
        for i in range(c, count, clients):
            job(conn, i)
    threads = [threading.Thread(target=worker, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def diagnosis_queue(port):
    """How many runs wait for a diagnosis (`/metrics`)."""
    text = Conn(port).call("GET", "/metrics").decode()
    for line in text.splitlines():
        if line.startswith("trainlens_diagnosis_queue_runs"):
            return float(line.split()[-1])
    return 0.0


def wait_diagnosed(port, timeout):
    """Waits (at most `timeout` s) until no run waits for a diagnosis and
    says on stderr how long that took."""
    t0 = time.monotonic()
    while (q := diagnosis_queue(port)) > 0 and time.monotonic() - t0 < timeout:
        time.sleep(1)
    print(f"diagnosis caught up in {time.monotonic() - t0:.0f} s (queue {q:.0f})", file=sys.stderr)


def time_gets(get, requests, warmup):
    """`get()` `warmup` times untimed, then `requests` times: the sorted
    times in ms and the last body."""
    for _ in range(warmup):
        get()
    samples, body = [], b""
    for _ in range(requests):
        t0 = time.perf_counter()
        body = get()
        samples.append((time.perf_counter() - t0) * 1000)
    return sorted(samples), body


def summary(ms):
    """Median, p90, min and max of the times `ms` (and `ms` as given)."""
    s = sorted(ms)
    return {"median_ms": statistics.median(s), "p90_ms": s[int(0.9 * (len(s) - 1))],
            "min_ms": s[0], "max_ms": s[-1], "samples_ms": ms}


def write_results(path, args, results):
    """The arguments and results as JSON at `path` (when one is given)."""
    if path:
        with open(path, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=2)
