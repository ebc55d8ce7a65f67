"""trainlens.records (the image, tensor and predictions builders) and
watch's feature_maps / weights options.

The builder tests need neither a server nor numpy/torch; the torch tests
skip without torch, except in CI; the live tests run against
$TRAINLENS_TEST_SERVER (tests/python_client.rs starts one) and skip when it
is not set."""

import base64
import json
import os
import unittest
import urllib.request

import trainlens
from trainlens import records

try:
    import torch
    from torch import nn

    import trainlens.torch as tlt
except ImportError:  # pragma: no cover - CI has torch
    torch = None
    if os.environ.get("CI"):
        raise

try:
    import numpy as np
except ImportError:  # pragma: no cover - CI has numpy (torch brings it)
    np = None
    if os.environ.get("CI"):
        raise

SERVER = os.environ.get("TRAINLENS_TEST_SERVER")

# A 1×1 PNG (the record format's example).
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2OUAAAAABJRU5ErkJggg==")


def dumps(rec):
    """As the client sends it: JSON without bare NaN."""
    return json.dumps(rec, allow_nan=False)


class ImageTest(unittest.TestCase):
    def test_png_bytes(self):
        rec = records.image("inputs/sample-0", PNG, step=3)
        self.assertEqual(rec, {"type": "image", "step": 3, "key": "inputs/sample-0",
                               "png": base64.b64encode(PNG).decode()})
        dumps(rec)

    def test_bytes_that_are_not_png_are_refused(self):
        with self.assertRaisesRegex(ValueError, "data"):
            records.image("x", b"GIF89a....", step=0)

    def test_hw_is_one_channel(self):
        rec = records.image("features/x", [[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]], step=0)
        self.assertEqual(rec["shape"], [1, 2, 3])
        self.assertEqual(rec["values"], [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
        self.assertNotIn("png", rec)

    def test_chw_row_major(self):
        data = [[[0.1, 0.0], [0.7, 0.3]], [[float("nan"), 0.5], [0.2, 0.9]]]
        rec = records.image("features/conv1", data, step=500)
        self.assertEqual(rec["shape"], [2, 2, 2])
        self.assertEqual(rec["values"], [0.1, 0.0, 0.7, 0.3, "NaN", 0.5, 0.2, 0.9])
        dumps(rec)

    def test_nan_and_infinities_are_kept_as_strings(self):
        rec = records.image("x", [[float("nan"), float("inf")], [float("-inf"), 1.0]], step=0)
        self.assertEqual(rec["values"], ["NaN", "Infinity", "-Infinity", 1.0])
        self.assertIn('"NaN"', dumps(rec))

    def test_hwc_is_transposed_when_the_last_dim_is_3_or_4_and_the_first_is_not(self):
        # 2 rows × 5 columns of RGB pixels: red = 1, green = 2, blue = 3.
        hwc = [[[1, 2, 3]] * 5] * 2
        rec = records.image("inputs/rgb", hwc, step=0)
        self.assertEqual(rec["shape"], [3, 2, 5])
        self.assertEqual(rec["values"], [1] * 10 + [2] * 10 + [3] * 10)
        self.assertEqual(records.image_layout([2, 5, 3]), "hwc")
        # First dim 3 too: channels first.
        self.assertEqual(records.image("x", [[[0] * 3] * 3] * 3, 0)["shape"], [3, 3, 3])
        self.assertEqual(records.image_layout([3, 5, 4]), "chw")
        self.assertEqual(records.image_layout([8, 6, 6]), "chw")
        # An explicit layout wins over the rule.
        self.assertEqual(records.image("x", [[[0] * 4] * 4] * 8, 0, layout="chw")["shape"],
                         [8, 4, 4])
        self.assertEqual(records.image("x", [[[0] * 4] * 4] * 8, 0)["shape"], [4, 8, 4])

    def test_too_many_values_are_refused(self):
        big = [[0.0] * 1025] * 1024  # 1,049,600 > 1,048,576
        with self.assertRaisesRegex(ValueError, r"data.*1,048,576"):
            records.image("x", big, step=0)
        records.image("x", [[0.0] * 1024] * 1024, step=0)  # exactly the limit

    def test_bad_arguments_name_the_argument(self):
        for kwargs, arg in [({"key": ""}, "key"), ({"key": "a\nb"}, "key"),
                            ({"key": "k" * 257}, "key"), ({"step": -1}, "step"),
                            ({"step": 1.5}, "step"), ({"data": [[[[0.0]]]]}, "data"),
                            ({"data": [[1, 2], [3]]}, "data"), ({"data": [["a"]]}, "data"),
                            ({"data": "image.png"}, "data")]:
            args = {"key": "x", "data": [[0.0]], "step": 0, **kwargs}
            with self.subTest(kwargs=kwargs), self.assertRaisesRegex(ValueError, arg):
                records.image(**args)

    @unittest.skipIf(np is None, "numpy is not installed")
    def test_numpy(self):
        rec = records.image("x", np.arange(6, dtype=np.float32).reshape(2, 3), step=1)
        self.assertEqual((rec["shape"], rec["values"]), ([1, 2, 3], [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]))
        rgb = np.zeros((5, 7, 3), dtype=np.uint8)
        rgb[..., 1] = 255
        rec = records.image("x", rgb, step=1)
        self.assertEqual(rec["shape"], [3, 5, 7])
        self.assertEqual(rec["values"][35:70], [255] * 35)
        rec = records.image("x", np.array([[np.nan, np.inf]]), step=1)
        self.assertEqual(rec["values"], ["NaN", "Infinity"])


class TensorTest(unittest.TestCase):
    def test_small_tensor_is_whole(self):
        rec = records.tensor("weights/fc1", [[0.5, -0.25, 1.0], [0.0, 2.0, 3.0]], step=500)
        self.assertEqual(rec, {"type": "tensor", "step": 500, "key": "weights/fc1", "shape": [2, 3],
                               "values": [0.5, -0.25, 1.0, 0.0, 2.0, 3.0]})

    def test_any_rank_and_nan(self):
        rec = records.tensor("t", [[[1.0, float("nan")]], [[float("-inf"), 4.0]]], step=0)
        self.assertEqual(rec["shape"], [2, 1, 2])
        self.assertEqual(rec["values"], [1.0, "NaN", "-Infinity", 4.0])
        self.assertEqual(records.tensor("t", 2.5, step=0)["shape"], [1])

    def check_block(self, rec, matrix, rows, cols):
        self.assertEqual(rec["shape"], [rows, cols])
        self.assertEqual(rec["sample"], f"rows:0-{rows - 1},cols:0-{cols - 1}")
        expected = [matrix[r][c] for r in range(rows) for c in range(cols)]
        self.assertEqual(rec["values"], expected)

    def test_a_1000x1000_matrix_is_sampled_as_a_contiguous_block(self):
        matrix = [[r * 1000 + c for c in range(1000)] for r in range(1000)]
        rec = records.tensor("weights/big", matrix, step=7)
        self.assertLessEqual(len(rec["values"]), 65536)
        self.check_block(rec, matrix, 256, 256)
        rec = records.tensor("weights/big", matrix, step=7, max_values=10_000)
        self.check_block(rec, matrix, 100, 100)

    def test_a_narrow_matrix_keeps_its_short_dimension(self):
        matrix = [[r * 10 + c for c in range(10)] for r in range(100_000)]
        rec = records.tensor("emb", matrix, step=0, max_values=1000)
        self.assertEqual(rec["shape"], [100, 10])
        self.assertEqual(rec["sample"], "rows:0-99")
        self.assertEqual(rec["values"], list(range(1000)))

    def test_vector_and_caller_sample(self):
        rec = records.tensor("v", list(range(100)), step=0, sample="layer 3 of 12", max_values=10)
        self.assertEqual((rec["shape"], rec["values"]), ([10], list(range(10))))
        self.assertEqual(rec["sample"], "layer 3 of 12; values:0-9")
        self.assertEqual(records.tensor("v", [1, 2], step=0, sample="head 0")["sample"], "head 0")

    def test_limits(self):
        with self.assertRaisesRegex(ValueError, "max_values"):
            records.tensor("t", [1.0], step=0, max_values=1_048_577)
        with self.assertRaisesRegex(ValueError, "max_values"):
            records.tensor("t", [1.0], step=0, max_values=0)
        with self.assertRaisesRegex(ValueError, "data"):
            records.tensor("t", [[]], step=0)
        with self.assertRaisesRegex(ValueError, "key"):
            records.tensor("", [1.0], step=0)

    @unittest.skipIf(np is None, "numpy is not installed")
    def test_numpy_sampling(self):
        a = np.arange(1_000_000, dtype=np.float64).reshape(1000, 1000)
        rec = records.tensor("w", a, step=0)
        self.assertEqual(rec["shape"], [256, 256])
        self.assertEqual(rec["values"], a[:256, :256].ravel().tolist())
        self.assertEqual(rec["sample"], "rows:0-255,cols:0-255")
        conv = np.zeros((512, 512, 3, 3), dtype=np.float32)
        rec = records.tensor("w", conv, step=0)
        self.assertEqual(rec["shape"][2:], [3, 3])
        self.assertLessEqual(len(rec["values"]), 65536)
        self.assertTrue(rec["sample"].startswith("dim0:0-"))


class PredictionsTest(unittest.TestCase):
    labels = [0, 2]
    probs = [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]

    def test_full_probabilities(self):
        rec = records.predictions("val", self.labels, self.probs, step=500, ids=["img-0", 17])
        self.assertEqual(rec, {"type": "predictions", "step": 500, "split": "val", "labels": [0, 2],
                               "probs": self.probs, "ids": ["img-0", 17]})
        self.assertNotIn("classes", rec)

    def test_top_k(self):
        rec = records.predictions("val", self.labels, self.probs, step=1, top_k=2)
        self.assertEqual(rec["classes"], [[0, 1], [2, 0]])
        self.assertEqual(rec["probs"], [[0.7, 0.2], [0.8, 0.1]])
        self.assertEqual(rec["num_classes"], 3)
        self.assertEqual(rec["labels"], [0, 2])

    def test_too_many_samples_are_refused(self):
        n = 20_001
        with self.assertRaisesRegex(ValueError, r"labels.*20,000"):
            records.predictions("val", [0] * n, [[1.0]] * n, step=0)
        rec = records.predictions("val", [0] * 20_000, [[1.0]] * 20_000, step=0)
        self.assertEqual(len(rec["labels"]), 20_000)

    def test_bad_input_names_the_argument(self):
        cases = [
            ({"split": " "}, "split"),
            ({"labels": [0]}, "probs"),  # 2 rows for 1 label
            ({"labels": [0, 3]}, r"labels\[1\]"),
            ({"labels": [0, 1.5]}, r"labels\[1\]"),
            ({"labels": [[1, 0], [0, 1]]}, "labels"),
            ({"probs": [[0.7, 0.2, 0.1], [2.0, -1.0, 0.5]]}, r"probs\[1\]\[0\].*softmax"),
            ({"probs": [[0.7, 0.2, float("nan")], [0.1, 0.1, 0.8]]}, r"probs\[0\]\[2\]"),
            ({"probs": [0.1, 0.9]}, "probs"),
            ({"ids": ["a"]}, "ids"),
            ({"ids": ["a", 1.5]}, r"ids\[1\]"),
            ({"top_k": 0}, "top_k"),
            ({"top_k": 21}, "top_k"),
            ({"top_k": 4}, "top_k"),
            ({"step": -1}, "step"),
        ]
        for kwargs, pattern in cases:
            args = {"split": "val", "labels": self.labels, "probs": self.probs, "step": 0, **kwargs}
            with self.subTest(kwargs=kwargs), self.assertRaisesRegex(ValueError, pattern):
                records.predictions(**args)

    def test_more_than_100_classes_need_top_k(self):
        row = [1.0 / 101] * 101
        with self.assertRaisesRegex(ValueError, "top_k"):
            records.predictions("val", [0], [row], step=0)
        rec = records.predictions("val", [100], [row[:100] + [0.5]], step=0, top_k=1)
        self.assertEqual((rec["classes"], rec["num_classes"]), ([[100]], 101))

    @unittest.skipIf(np is None, "numpy is not installed")
    def test_numpy(self):
        probs = np.array([[0.1, 0.6, 0.3], [0.5, 0.25, 0.25]], dtype=np.float32)
        rec = records.predictions("val", np.array([1, 0]), probs, step=0, ids=np.array([4, 5]),
                                  top_k=2)
        self.assertEqual(rec["classes"], [[1, 2], [0, 1]])  # ties: the lower index first
        self.assertEqual(rec["ids"], [4, 5])
        self.assertAlmostEqual(rec["probs"][0][0], 0.6, places=6)
        dumps(rec)


@unittest.skipIf(torch is None, "torch is not installed")
class TorchBuildersTest(unittest.TestCase):
    def test_tensors(self):
        fmap = torch.arange(2 * 3 * 5, dtype=torch.float32).reshape(2, 3, 5)
        fmap[0, 0, 0] = float("nan")
        rec = records.image("features/c", fmap, step=0)
        self.assertEqual(rec["shape"], [2, 3, 5])
        self.assertEqual(rec["values"][:3], ["NaN", 1.0, 2.0])
        w = torch.randn(1000, 1000, requires_grad=True)
        rec = records.tensor("weights/w", w, step=0)
        self.assertEqual(rec["shape"], [256, 256])
        self.assertEqual(rec["values"][256], float(w[1, 0].detach()))
        logits = torch.randn(50, 1000)
        rec = records.predictions("val", torch.randint(0, 1000, (50,)), logits.softmax(1), step=0,
                                  top_k=5)
        top = logits.softmax(1).topk(5)
        self.assertEqual(rec["classes"], top.indices.tolist())
        self.assertEqual(rec["num_classes"], 1000)
        with self.assertRaisesRegex(ValueError, "softmax"):
            records.predictions("val", torch.zeros(50, dtype=torch.long), logits, step=0, top_k=5)


class FakeRun:
    """Records the calls watch makes."""

    def __init__(self):
        self.calls = []

    def log(self, metrics, step):
        self.calls.append(("log", step, metrics))

    def log_histogram(self, key, step, **kw):
        self.calls.append(("log_histogram", step, key))

    def log_model(self, **kw):
        self.calls.append(("log_model", None, kw))

    def log_image(self, key, data, step):
        self.calls.append(("log_image", step, records.image(key, data, step)))

    def log_tensor(self, key, data, step, sample=None):
        self.calls.append(("log_tensor", step, records.tensor(key, data, step, sample)))

    def log_record(self, record):
        self.calls.append(("log_" + record["type"], record["step"], record))

    def records(self, kind):
        return [(step, rec) for name, step, rec in self.calls if name == kind]


if torch is not None:
    class SmallCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 12, 3, padding=1)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(12, 6, 3, stride=2, padding=1)
            self.fc1 = nn.Linear(6 * 4 * 4, 10)

        def forward(self, x):
            x = self.relu(self.conv1(x))
            x = torch.relu(self.conv2(x))
            return self.fc1(x.flatten(1))


@unittest.skipIf(torch is None, "torch is not installed")
class WatchFeatureMapsTest(unittest.TestCase):
    def setUp(self):
        torch.manual_seed(0)
        self.model = SmallCNN()
        self.x, self.y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))

    def train(self, steps, **kw):
        run = FakeRun()
        opt = torch.optim.SGD(self.model.parameters(), lr=0.01)
        w = tlt.watch(run, self.model, optimizer=opt, loss_fn=nn.CrossEntropyLoss(), **kw)
        self.model.train()
        for _ in range(steps):
            opt.zero_grad()
            nn.functional.cross_entropy(self.model(self.x), self.y).backward()
            opt.step()
        w.unwatch()
        return run

    def test_feature_maps_on_the_right_steps(self):
        run = self.train(13, every=2, feature_maps=["conv1", "conv2"], feature_maps_every=4,
                         feature_map_channels=5)
        images = run.records("log_image")
        conv1 = [(s, r) for s, r in images if r["key"] == "features/conv1"]
        self.assertEqual([s for s, _ in conv1], [0, 4, 8, 12])
        for step, rec in conv1:
            self.assertEqual(rec["shape"], [5, 8, 8])  # 12 channels, 5 sent
            self.assertEqual(len(rec["values"]), 5 * 8 * 8)
        # conv2's maps are 6 channels of 4×4: sent channels first too.
        conv2 = [r for s, r in images if r["key"] == "features/conv2"]
        self.assertEqual(len(conv2), 4)
        self.assertEqual(conv2[0]["shape"], [5, 4, 4])
        self.assertEqual(len({s for s, _ in images}), 4)
        # The scalar signals are unchanged.
        self.assertEqual([s for s, _ in run.records("log")], [0, 2, 4, 6, 8, 10, 12])
        self.assertFalse(run.records("log_tensor"))

    def test_feature_map_values_are_the_first_sample_before_the_inplace_relu(self):
        run = FakeRun()
        tlt.watch(run, self.model, every=1, feature_maps=["conv1"], feature_maps_every=1,
                  feature_map_channels=3, log_model=False)
        self.model.train()
        with torch.no_grad():
            expected = self.model.conv1(self.x)[0, :3]
            self.model(self.x)
        self.model.eval()
        self.model(self.x)  # eval passes are not measured
        # The measurement is sent when it closes: at the next training
        # forward (or the optimizer's step, or unwatch).
        self.assertEqual(run.records("log_image"), [])
        self.model.train()
        self.model(self.x)
        (step, rec), = [(s, r) for s, r in run.records("log_image")]
        self.assertEqual(step, 0)
        self.assertTrue(any(v < 0 for v in rec["values"]))  # not rectified
        self.assertEqual(rec["values"], [float(v) for v in expected.reshape(-1).tolist()])

    def test_weights(self):
        run = self.train(5, every=2, weights=["fc1", "conv1"], weights_every=4)
        tensors = run.records("log_tensor")
        self.assertEqual([(s, r["key"]) for s, r in tensors],
                         [(0, "weights/fc1"), (0, "weights/conv1"),
                          (4, "weights/fc1"), (4, "weights/conv1")])
        fc1 = tensors[0][1]
        self.assertEqual(fc1["shape"], [10, 96])
        self.assertNotIn("sample", fc1)
        self.assertEqual(tensors[1][1]["shape"], [12, 1, 3, 3])
        self.assertFalse(run.records("log_image"))

    def test_a_large_weight_is_sampled(self):
        model = nn.Sequential(nn.Linear(1000, 1000), nn.ReLU(), nn.Linear(1000, 2))
        run = FakeRun()
        w = tlt.watch(run, model, every=1, weights=["0"], weights_every=1, log_model=False)
        model.train()
        before = model[0].weight.detach().clone()
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        opt.zero_grad()
        model(torch.randn(2, 1000)).sum().backward()
        opt.step()
        w.unwatch()
        (step, rec), = run.records("log_tensor")
        self.assertEqual((rec["key"], rec["shape"], rec["sample"]),
                         ("weights/0", [256, 256], "rows:0-255,cols:0-255"))
        # The weights the measured forward saw (as the weights/ histogram).
        self.assertEqual(rec["values"][:5], before[0, :5].double().tolist())

    def test_unknown_names_raise_before_anything_is_sent(self):
        run = FakeRun()
        with self.assertRaises(ValueError) as e:
            tlt.watch(run, self.model, feature_maps=["conv1", "conv9"])
        msg = str(e.exception)
        self.assertIn("feature_maps", msg)
        self.assertIn("'conv9'", msg)
        self.assertIn("'conv2'", msg)  # some valid names
        with self.assertRaises(ValueError) as e:
            tlt.watch(run, self.model, weights=["relu", "fc2"])
        msg = str(e.exception)
        self.assertIn("weights", msg)
        self.assertIn("'relu', 'fc2'", msg)
        self.assertIn("'fc1'", msg)
        with self.assertRaises(ValueError):
            tlt.watch(run, self.model, feature_maps="conv1")  # a str, not a list
        with self.assertRaises(ValueError):
            tlt.watch(run, self.model, feature_maps=["conv1"], feature_map_channels=0)
        self.assertEqual(run.calls, [])
        # No hook was left behind.
        self.assertFalse(self.model._forward_pre_hooks)

    def test_nothing_extra_between_measured_steps(self):
        w = tlt.watch(FakeRun(), self.model, every=5, feature_maps=["conv1"], feature_maps_every=5,
                      weights=["fc1"], weights_every=5, log_model=False)
        self.model.train()
        # watch's forward hook is one global hook (its modules are looked up
        # in it), registered for a measured step only.
        global_hooks = torch.nn.modules.module._global_forward_hooks
        before = len(global_hooks)
        self.model(self.x)  # step 0: measured, hooks registered
        self.assertEqual(len(global_hooks), before + 1)
        self.assertTrue(self.model.fc1.weight._post_accumulate_grad_hooks)
        w._finish_measurement()
        self.assertEqual(len(global_hooks), before)
        self.assertFalse(self.model.fc1.weight._post_accumulate_grad_hooks)
        self.model(self.x)  # step 1: nothing but the step counter
        self.assertEqual(len(global_hooks), before)
        self.assertFalse(self.model.conv1._forward_hooks)
        self.assertFalse(self.model.fc1.weight._post_accumulate_grad_hooks)
        self.assertEqual(len(self.model._forward_pre_hooks), 1)
        w.unwatch()


@unittest.skipUnless(SERVER, "TRAINLENS_TEST_SERVER is not set")
class LiveTest(unittest.TestCase):
    """The server accepts what the builders make (and gives it back)."""

    def post(self, run, recs):
        body = "".join(dumps(r) + "\n" for r in recs).encode()
        req = urllib.request.Request(f"{SERVER}/api/v1/runs/{run.id}/records", data=body,
                                     method="POST",
                                     headers={"content-type": "application/x-ndjson"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            resp.read()

    def export(self, run):
        with urllib.request.urlopen(f"{SERVER}/api/v1/runs/{run.id}/export", timeout=10) as resp:
            return [json.loads(line) for line in resp.read().decode().splitlines() if line.strip()]

    def test_the_server_takes_the_records(self):
        run = trainlens.init(project="py-records", name="builders", server=SERVER)
        matrix = [[(r - c) / 1000 for c in range(1000)] for r in range(300)]
        recs = [
            records.image("inputs/sample-0", PNG, step=1),
            records.image("features/conv1", [[[0.1, float("nan")], [0.3, 4]]] * 3, step=1),
            records.tensor("weights/fc1", matrix, step=1),
            records.predictions("val", [0, 2], [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], step=1,
                                ids=["img-0", 17]),
            records.predictions("val-top", [150], [[0.0] * 150 + [0.9] + [0.0] * 849], step=1,
                                top_k=2),
        ]
        self.post(run, recs)
        run.finish()
        out = {(r["type"], r.get("key") or r.get("split")): r for r in self.export(run)}
        fmap = out[("image", "features/conv1")]
        self.assertEqual(fmap["shape"], [3, 2, 2])
        self.assertEqual(fmap["values"][:2], [0.1, "NaN"])
        self.assertEqual(out[("image", "inputs/sample-0")]["png"], base64.b64encode(PNG).decode())
        t = out[("tensor", "weights/fc1")]
        self.assertEqual((t["shape"], t["sample"]), ([256, 256], "rows:0-255,cols:0-255"))
        self.assertEqual(out[("predictions", "val")]["ids"], ["img-0", 17])
        top = out[("predictions", "val-top")]
        self.assertEqual((top["classes"][0][0], top["num_classes"]), (150, 1000))

    @unittest.skipIf(torch is None, "torch is not installed")
    def test_watch_on_a_live_run(self):
        run = trainlens.init(project="py-records", name="watch", server=SERVER, flush_every=0.05)
        if not hasattr(run, "log_image"):  # the Run's methods are being added
            self.skipTest("Run.log_image is not there yet")
        torch.manual_seed(0)
        model = SmallCNN()
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        w = tlt.watch(run, model, every=2, optimizer=opt, feature_maps=["conv1", "conv2"],
                      feature_maps_every=2, weights=["fc1"], weights_every=2)
        x, y = torch.randn(4, 1, 8, 8), torch.randint(0, 10, (4,))
        model.train()
        for _ in range(3):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        w.unwatch()
        run.finish()
        out = self.export(run)
        images = sorted((r["step"], r["key"], r["shape"]) for r in out if r["type"] == "image")
        self.assertEqual(images, [(0, "features/conv1", [8, 8, 8]), (0, "features/conv2", [6, 4, 4]),
                                  (2, "features/conv1", [8, 8, 8]), (2, "features/conv2", [6, 4, 4])])
        tensors = [(r["step"], r["key"], r["shape"]) for r in out if r["type"] == "tensor"]
        self.assertEqual(sorted(tensors), [(0, "weights/fc1", [10, 96]), (2, "weights/fc1", [10, 96])])


if __name__ == "__main__":
    unittest.main()
