"""trainlens.torch against a live server at $TRAINLENS_TEST_SERVER
(tests/python_client.rs starts one). Skipped without torch, except in CI."""

import json
import math
import os
import unittest
import urllib.parse
import urllib.request

import trainlens

try:
    import torch
    from torch import nn

    import trainlens.torch as tlt
except ImportError:  # pragma: no cover - CI has torch
    torch = None
    if os.environ.get("CI"):
        raise

SERVER = os.environ.get("TRAINLENS_TEST_SERVER", "http://127.0.0.1:8080")


def get(path):
    with urllib.request.urlopen(SERVER + path, timeout=10) as resp:
        return json.loads(resp.read().decode())


def series(run):
    return {s["key"]: s for s in get(f"/api/v1/runs/{run.id}/series")["series"]}


def points(run, key):
    q = urllib.parse.quote(key, safe="")
    body = get(f"/api/v1/runs/{run.id}/scalars?key={q}")
    return dict(zip(body["steps"], body["values"]))


def train(model, steps, x, y, loss_fn=None, step_optimizer=True, lr=0.05, before_step=None):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    return opt, loss_fn, lambda w: _loop(model, opt, loss_fn, steps, x, y, step_optimizer, before_step)


def _loop(model, opt, loss_fn, steps, x, y, step_optimizer, before_step):
    model.train()
    for step in range(steps):
        if before_step:
            before_step(step)
        opt.zero_grad()
        out = model(x)
        if isinstance(out, tuple):
            out = out[0]
        loss = loss_fn(out.reshape(len(y), -1), y)
        loss.backward()
        if step_optimizer:
            opt.step()


@unittest.skipIf(torch is None, "torch is not installed")
class WatchTest(unittest.TestCase):
    def run_of(self, name):
        return trainlens.init(project="py-torch", name=name, server=SERVER, flush_every=0.05)

    def setUp(self):
        torch.manual_seed(0)

    def test_mlp_names_steps_model_record_and_unwatch(self):
        model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
        x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        with self.run_of("mlp") as run:
            w = tlt.watch(run, model, every=3, histograms_every=6, optimizer=opt, loss_fn=loss_fn)
            model.train()
            for step in range(10):
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
                run.log({"train/loss": 1.0}, step=step)
            # Eval forwards are neither counted nor measured.
            model.eval()
            with torch.no_grad():
                model(x)
            w.unwatch()
            model.train()
            for _ in range(5):  # after unwatch: nothing more is logged
                opt.zero_grad()
                loss_fn(model(x), y).backward()
                opt.step()
        got = series(run)
        for key in ["grad_norm/0", "grad_norm/2", "grad_norm/4", "weight_norm/0", "update_ratio/4",
                    "act_mean/0", "act_std/2", "dead_frac/0", "sat_frac/2", "act_mean/4"]:
            self.assertIn(key, got)
        self.assertNotIn("dead_frac/2", got, "tanh layers get sat_frac, not dead_frac")
        self.assertNotIn("dead_frac/4", got, "the last layer has no activation module")
        self.assertFalse(any("bias" in k for k in got), sorted(got))
        self.assertEqual(sorted(points(run, "grad_norm/0")), [0, 3, 6, 9])
        self.assertEqual(sorted(points(run, "update_ratio/0")), [0, 3, 6, 9])
        self.assertTrue(all(v > 0 for v in points(run, "update_ratio/0").values()))
        hist = get(f"/api/v1/runs/{run.id}/histograms")["histograms"]
        hist = {h["key"]: h for h in hist}
        self.assertEqual((hist["weights/0"]["first_step"], hist["weights/0"]["last_step"]), (0, 6))
        self.assertIn("grads/2", hist)
        self.assertIn("activations/0", hist)
        model_rec = get(f"/api/v1/runs/{run.id}/model")
        layers = [(l["name"], l["type"], l.get("in"), l.get("out"), l["activation"]) for l in model_rec["layers"]]
        self.assertEqual(layers, [("0", "Linear", 8, 16, "relu"), ("2", "Linear", 16, 16, "tanh"),
                                  ("4", "Linear", 16, 4, "none")])
        self.assertEqual(model_rec["loss"], "cross_entropy")
        self.assertEqual(model_rec["optimizer"]["name"], "sgd")
        self.assertEqual(model_rec["optimizer"]["momentum"], 0.9)

    def test_nan_gradients_arrive_as_nan_and_a_forgotten_step_as_a_zero_update(self):
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        with self.run_of("nan") as run:
            tlt.watch(run, model, every=1, optimizer=opt)
            model.train()
            for step in range(6):
                opt.zero_grad()
                inp = x.clone()
                if step == 4:
                    inp[0, 0] = float("nan")
                nn.functional.cross_entropy(model(inp), y).backward()
                if step < 2:
                    opt.step()  # then "forgotten"
        g = points(run, "grad_norm/0")
        self.assertEqual(g[4], "NaN")
        self.assertTrue(all(isinstance(g[s], float) for s in (0, 1, 2, 3)))
        u = points(run, "update_ratio/0")
        self.assertGreater(u[0], 0)
        self.assertEqual(u[2], 0.0)
        self.assertEqual(u[3], 0.0)

    def test_a_frozen_layer_is_watched_without_a_gradient(self):
        model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        model[0].weight.requires_grad_(False)
        x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
        with self.run_of("frozen") as run:
            tlt.watch(run, model, every=1, optimizer=opt)
            model.train()
            for step in range(3):
                opt.zero_grad()
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
        got = series(run)
        self.assertNotIn("grad_norm/0", got)
        self.assertIn("grad_norm/2", got)
        self.assertEqual(set(points(run, "update_ratio/0").values()), {0.0})
        self.assertTrue(all(v > 0 for v in points(run, "update_ratio/2").values()))

    def test_cnn_lstm_and_transformer_names(self):
        cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),
                            nn.Flatten(), nn.Linear(4 * 8 * 8, 3))
        with torch.no_grad():
            cnn[2].bias.fill_(-100.0)  # every unit of the second conv dead
        with self.run_of("cnn") as run:
            opt, loss_fn, loop = train(cnn, 2, torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,)))
            tlt.watch(run, cnn, every=1, optimizer=opt)
            loop(None)
        got = series(run)
        self.assertIn("grad_norm/0", got)
        self.assertEqual(points(run, "dead_frac/2")[0], 1.0)
        self.assertLess(points(run, "dead_frac/0")[0], 1.0)

        class Seq(nn.Module):
            def __init__(self):
                super().__init__()
                self.lstm = nn.LSTM(5, 6, batch_first=True)
                self.head = nn.Linear(6, 2)

            def forward(self, x):
                out, _ = self.lstm(x)
                return self.head(out[:, -1])

        lstm = Seq()
        with self.run_of("lstm") as run:
            opt, loss_fn, loop = train(lstm, 2, torch.randn(4, 7, 5), torch.randint(0, 2, (4,)))
            tlt.watch(run, lstm, every=1, optimizer=opt)
            loop(None)
        got = series(run)
        for key in ["grad_norm/lstm.weight_ih_l0", "grad_norm/lstm.weight_hh_l0", "grad_norm/head",
                    "act_mean/lstm"]:
            self.assertIn(key, got)

        class Tiny(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(11, 8)
                layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, batch_first=True)
                self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
                self.head = nn.Linear(8, 11)

            def forward(self, tokens):
                return self.head(self.encoder(self.embed(tokens)))[:, -1]

        tiny = Tiny()
        with self.run_of("transformer") as run:
            opt, loss_fn, loop = train(tiny, 2, torch.randint(0, 11, (4, 6)), torch.randint(0, 11, (4,)))
            tlt.watch(run, tiny, every=1, optimizer=opt, loss_fn=loss_fn)
            loop(None)
        got = series(run)
        for key in ["grad_norm/embed", "grad_norm/encoder.layers.0.self_attn.in_proj_weight",
                    "grad_norm/encoder.layers.1.self_attn.out_proj", "grad_norm/encoder.layers.0.linear1",
                    "update_ratio/head"]:
            self.assertIn(key, got)

    def test_dataset_summary_from_arrays_and_a_loader(self):
        x = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [5.0, 6.0], [7.0, 8.0]])
        y = torch.tensor([0, 1, 1, 1])
        s = tlt.dataset_summary(x, y)
        self.assertEqual((s["n"], s["n_features"], s["missing"]), (4, 2, 1))
        self.assertEqual(s["class_counts"], {"0": 1, "1": 3})
        self.assertAlmostEqual(s["feature_mean"][0], 4.0)
        self.assertAlmostEqual(s["feature_mean"][1], 16.0 / 3)
        self.assertAlmostEqual(s["feature_std"][0], math.sqrt(5.0))
        data = torch.utils.data.TensorDataset(torch.randn(100, 3), torch.randint(0, 5, (100,)))
        loader = torch.utils.data.DataLoader(data, batch_size=16)
        for source in (data, loader):
            s = tlt.dataset_summary(source)
            self.assertEqual((s["n"], s["n_features"], s["missing"]), (100, 3, 0))
            self.assertEqual(sum(s["class_counts"].values()), 100)
        with self.run_of("dataset") as run:
            run.log_dataset("train", x, y)
        got = get(f"/api/v1/runs/{run.id}/datasets")["datasets"]
        self.assertEqual(got[0]["split"], "train")
        self.assertEqual(got[0]["missing"], 1)


if __name__ == "__main__":
    unittest.main()
