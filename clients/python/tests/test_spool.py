"""The spool: offline runs, outages and `sync`, against a live server at
$TRAINLENS_TEST_SERVER. The server-kill test starts servers of its own from
$TRAINLENS_BIN (tests/python_client.rs sets both)."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest
import urllib.request

import trainlens
from trainlens import spool

SERVER = os.environ.get("TRAINLENS_TEST_SERVER")
BIN = os.environ.get("TRAINLENS_BIN")


def get(server, path):
    with urllib.request.urlopen(server + path, timeout=10) as resp:
        return json.loads(resp.read().decode())


def counts(server, run_id):
    return {s["key"]: s["count"] for s in get(server, f"/api/v1/runs/{run_id}/series")["series"]}


def runs_with_key(server, project, key):
    runs = get(server, f"/api/v1/runs?project={project}&limit=1000")["runs"]
    return [r for r in runs if r.get("run_key") == key]


@unittest.skipUnless(SERVER, "TRAINLENS_TEST_SERVER not set")
class SpoolTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="trainlens-spool-")

    def test_an_offline_run_is_synced_once_however_often_it_is_synced(self):
        run = trainlens.init(project="spool", name="offline", mode="offline", dir=self.dir,
                             config={"lr": 0.1})
        for step in range(500):
            run.log({"train/loss": float("nan") if step == 250 else 1.0 / (step + 1), "lr": 0.1}, step=step)
        run.log_histogram("weights/fc1", step=499, values=[0.1, 0.2, float("inf")], bins=2)
        run.finish()
        self.assertIsNone(run.id, "offline: never sent")
        self.assertEqual(spool.spool_files([self.dir]), [run.spool.path])

        self.assertEqual(spool.sync([self.dir], server=SERVER), 0)
        [info] = runs_with_key(SERVER, "spool", run.run_key)
        self.assertEqual(info["status"], "finished")
        self.assertEqual(info["name"], "offline")
        self.assertEqual(counts(SERVER, info["id"]), {"lr": 500, "train/loss": 500})
        pts = get(SERVER, f"/api/v1/runs/{info['id']}/scalars?key=train/loss")
        self.assertEqual(pts["values"][250], "NaN")
        hist = get(SERVER, f"/api/v1/runs/{info['id']}/histograms?key=weights/fc1")["histograms"]
        self.assertEqual(hist[0]["nonfinite"], 1)

        # Again, forced again, and (when there) with the Rust CLI: the same run, the same points.
        self.assertEqual(spool.sync([self.dir], server=SERVER), 0)
        self.assertEqual(spool.sync([run.spool.path], server=SERVER, force=True), 0)
        if BIN:
            out = subprocess.run([BIN, "sync", "--server", SERVER, "--force", self.dir],
                                 capture_output=True, text=True, timeout=60)
            self.assertEqual(out.returncode, 0, out.stderr)
            self.assertIn(info["id"], out.stdout)
        self.assertEqual([r["id"] for r in runs_with_key(SERVER, "spool", run.run_key)], [info["id"]])
        self.assertEqual(counts(SERVER, info["id"]), {"lr": 500, "train/loss": 500})

    def test_an_interrupted_sync_is_completed_without_duplicates(self):
        run = trainlens.init(project="spool", mode="offline", dir=self.dir)
        for step in range(2000):
            run.log({"a": float(step)}, step=step)
        run.finish()
        http = trainlens._Http(SERVER, 10, 0)
        sent = []
        real = http.send

        def send_two_then_fail(method, path, data, headers, retries=None):
            if len(sent) == 2:
                raise trainlens.ServerUnreachable("cut off")
            sent.append(path)
            return real(method, path, data, headers, retries)

        http.send = send_two_then_fail
        with self.assertRaises(trainlens.ServerUnreachable):
            spool.upload(http, run.spool.path, chunk_bytes=20_000)
        self.assertFalse(spool.synced(run.spool.path))
        [info] = runs_with_key(SERVER, "spool", run.run_key)
        self.assertLess(counts(SERVER, info["id"])["a"], 2000)
        self.assertEqual(info["status"], "running")
        self.assertEqual(spool.sync([run.spool.path], server=SERVER), 0)
        self.assertTrue(spool.synced(run.spool.path))
        [info] = runs_with_key(SERVER, "spool", run.run_key)
        self.assertEqual(counts(SERVER, info["id"]), {"a": 2000})
        self.assertEqual(info["status"], "finished")
        values = get(SERVER, f"/api/v1/runs/{info['id']}/scalars?key=a")["values"]
        self.assertEqual(values, [float(s) for s in range(2000)])

    def test_not_a_spool_is_refused_with_the_reason(self):
        path = os.path.join(self.dir, "x.jsonl")
        with open(path, "w") as f:
            f.write('{"type":"run","name":"no key"}\n{"type":"scalar","key":"a","step":0,"value":1}\n')
        self.assertEqual(spool.sync([path], server=SERVER), 1)
        self.assertFalse(spool.synced(path))

    def test_the_memory_bound_spools_during_an_outage(self):
        run = trainlens.init(project="spool", server="http://127.0.0.1:9", retries=0, timeout=1, dir=self.dir,
                             flush_every=0.02, max_memory_points=100, exit_wait=0.5)
        for step in range(1000):
            run.log({"a": 1.0}, step=step)
            if step % 100 == 0:
                time.sleep(0.03)
        deadline = time.monotonic() + 5
        while not run.spool.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertTrue(run.spool.exists(), "spooled before the run ends")
        run.finish()
        with open(run.spool.path) as f:
            kinds = [json.loads(line)["type"] for line in f]
        self.assertEqual(kinds.count("scalar"), 1000)
        self.assertEqual((kinds[0], kinds[-1]), ("run", "end"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, db, port):
        self.db, self.port = db, port
        self.url = f"http://127.0.0.1:{port}"
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{self.port}", "--database-url",
                                      f"sqlite://{self.db}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/healthz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the server did not start")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@unittest.skipUnless(BIN, "TRAINLENS_BIN not set")
class ServerKillTest(unittest.TestCase):
    def test_a_server_killed_mid_run_loses_and_duplicates_nothing(self):
        tmp = tempfile.mkdtemp(prefix="trainlens-kill-")
        server = Server(os.path.join(tmp, "t.db"), free_port())
        server.start()
        try:
            run = trainlens.init(project="kill", server=server.url, dir=os.path.join(tmp, "spool"),
                                 flush_every=0.02, max_memory_points=300, retries=0, timeout=2)
            first_id = run.id
            for step in range(3000):
                run.log({"train/loss": 1.0 / (step + 1), "lr": 0.1}, step=step)
                if step == 1000:
                    server.kill()
                if step == 2000:
                    server.start()
                if step % 50 == 0:
                    time.sleep(0.01)
            run.finish()
            self.assertEqual(run.id, first_id)
            self.assertTrue(run.spool.exists(), "the outage went through the spool")
            self.assertEqual(counts(server.url, run.id), {"lr": 3000, "train/loss": 3000})
            values = get(server.url, f"/api/v1/runs/{run.id}/scalars?key=train/loss")["values"]
            self.assertEqual(values, [1.0 / (s + 1) for s in range(3000)])
            self.assertEqual(get(server.url, f"/api/v1/runs/{run.id}")["status"], "finished")
            self.assertEqual(len(runs_with_key(server.url, "kill", run.run_key)), 1)
            # The run uploaded its own spool at finish: syncing it again changes nothing.
            self.assertTrue(spool.synced(run.spool.path))
            self.assertEqual(spool.sync([run.spool.path], server=server.url, force=True), 0)
            self.assertEqual(counts(server.url, run.id), {"lr": 3000, "train/loss": 3000})
        finally:
            server.kill()


if __name__ == "__main__":
    unittest.main()
