"""Runs against a live trainlens server at $TRAINLENS_TEST_SERVER
(tests/python_client.rs starts one)."""

import json
import math
import os
import tempfile
import time
import unittest
import urllib.request

import trainlens

SERVER = os.environ.get("TRAINLENS_TEST_SERVER", "http://127.0.0.1:8080")


def get(path):
    with urllib.request.urlopen(SERVER + path, timeout=10) as resp:
        return json.loads(resp.read().decode())


class ClientTest(unittest.TestCase):
    def test_a_run_with_nan_histograms_model_and_dataset(self):
        with trainlens.init(project="py", name="client", config={"lr": 0.1}, server=SERVER, flush_every=0.05) as run:
            run.log_model(layers=[{"name": "fc1", "type": "Linear", "in": 4, "out": 2, "activation": "relu"}],
                          loss="cross_entropy", optimizer={"name": "sgd", "lr": 0.1})
            run.log_dataset("train", n=100, n_features=4, missing=0, class_counts={"0": 50, "1": 50})
            for step in range(300):
                loss = 2.0 / (step + 1) if step < 290 else float("nan")
                run.log({"train/loss": loss, "lr": 0.1}, step=step)
            run.log({"val/loss": 0.5, "val/acc": 0.9}, step=299)
            run.log_histogram("weights/fc1", step=299, values=[0.1, 0.2, 0.3, float("inf")], bins=4)
        self.assertTrue(run.finished)
        info = get(f"/api/v1/runs/{run.id}")
        self.assertEqual(info["status"], "finished")
        self.assertEqual(info["project"], "py")
        series = {s["key"]: s for s in get(f"/api/v1/runs/{run.id}/series")["series"]}
        self.assertEqual(series["train/loss"]["count"], 300)
        self.assertEqual(series["train/loss"]["last_value"], "NaN")
        self.assertEqual(series["val/acc"]["last_value"], 0.9)
        pts = get(f"/api/v1/runs/{run.id}/scalars?key=train/loss")
        self.assertEqual(pts["values"][290], "NaN")
        self.assertAlmostEqual(pts["values"][1], 1.0)
        self.assertTrue(all(isinstance(t, float) for t in pts["times"]))
        hist = get(f"/api/v1/runs/{run.id}/histograms?key=weights/fc1")["histograms"][0]
        self.assertEqual((sum(hist["counts"]), hist["nonfinite"], len(hist["edges"])), (3, 1, 5))
        self.assertEqual(get(f"/api/v1/runs/{run.id}/model")["loss"], "cross_entropy")
        self.assertEqual(get(f"/api/v1/runs/{run.id}/datasets")["datasets"][0]["n"], 100)

    def test_an_exception_marks_the_run_failed(self):
        with self.assertRaises(RuntimeError):
            with trainlens.init(project="py", server=SERVER) as run:
                run.log({"train/loss": 1.0}, step=0)
                raise RuntimeError("boom")
        self.assertEqual(get(f"/api/v1/runs/{run.id}")["status"], "failed")

    def test_bad_input_is_reported_with_the_field(self):
        run = trainlens.init(project="py", server=SERVER, flush_every=3600)
        with self.assertRaises(ValueError):
            run.log({"a": 1.0}, step=-1)
        run.log({"": 1.0}, step=0)
        with self.assertRaises(trainlens.TrainlensError) as e:
            run.flush()
        self.assertIn("422", str(e.exception))
        self.assertIn("key", str(e.exception))
        run.finish()

    def test_an_unreachable_server_is_neither_an_error_nor_a_hang(self):
        with tempfile.TemporaryDirectory() as d:
            started = time.monotonic()
            run = trainlens.init(server="http://127.0.0.1:9", retries=0, timeout=2, dir=d, exit_wait=1)
            run.log({"train/loss": 1.0}, step=0)
            run.finish()
            self.assertLess(time.monotonic() - started, 10)
            self.assertIsNone(run.id)
            with open(run.spool.path) as f:
                lines = [json.loads(line) for line in f]
            self.assertEqual([line["type"] for line in lines], ["run", "scalar", "end"])

    def test_values_travel_as_the_server_expects(self):
        self.assertEqual(trainlens._value(float("inf")), "Infinity")
        self.assertEqual(trainlens._value(-math.inf), "-Infinity")
        self.assertEqual(trainlens._value(2), 2.0)


if __name__ == "__main__":
    unittest.main()


class OutageTest(unittest.TestCase):
    def test_a_batch_survives_an_outage_and_is_sent_once(self):
        run = trainlens.init(project="py", name="outage", server=SERVER, flush_every=3600, retries=0)
        run.log({"train/loss": 1.0}, step=0)
        real = run._http.server
        run._http.server = "http://127.0.0.1:9"  # the server goes away
        with self.assertRaises(trainlens.ServerUnreachable):
            run.flush()
        self.assertEqual(len(run._pending), 1, "the batch is kept")
        run._http.server = real  # and comes back
        run.log({"train/loss": 0.5}, step=1)
        run.flush()
        self.assertEqual(run._pending, [])
        series = get(f"/api/v1/runs/{run.id}/series")["series"]
        self.assertEqual(series[0]["count"], 2)
        run.finish()
