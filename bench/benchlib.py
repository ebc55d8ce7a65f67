"""What the bench scripts share: a free port, a `trainlens serve` child on
it, and waiting until a server answers /healthz. Standard library only.

The scripts run as `python3 bench/<script>.py`, so this folder is on their
import path."""

import argparse
import contextlib
import http.client
import socket
import subprocess
import tempfile
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
