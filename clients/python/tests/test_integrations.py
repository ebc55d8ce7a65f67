"""trainlens.integrations (Hugging Face, Lightning, Keras) against a live
server at $TRAINLENS_TEST_SERVER (tests/python_client.rs starts one).

Each class trains a tiny model for a few steps on the CPU and reads the run
back over HTTP. A class is skipped when its framework is not installed (they
are optional, see .ci/python-optional.txt) or when $TRAINLENS_TEST_SERVER is
not set. Keras runs on the backend in $KERAS_BACKEND, torch by default (set
here before keras is imported).
"""

import importlib.util
import json
import os
import tempfile
import unittest
import urllib.parse
import urllib.request

os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the tests build their models; nothing to fetch

import trainlens  # noqa: E402  (after KERAS_BACKEND)

SERVER = os.environ.get("TRAINLENS_TEST_SERVER")
NO_SERVER = "TRAINLENS_TEST_SERVER is not set"


def _has(*modules):
    """Whether every module can be imported (without importing it)."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


HAS_TORCH = _has("torch")
HAS_TRANSFORMERS = HAS_TORCH and _has("transformers", "accelerate")  # Trainer needs accelerate
HAS_LIGHTNING = HAS_TORCH and (_has("lightning") or _has("pytorch_lightning"))
KERAS_BACKEND = os.environ["KERAS_BACKEND"]
HAS_KERAS = _has("keras") and _has(KERAS_BACKEND)


def get(path):
    with urllib.request.urlopen(SERVER + path, timeout=10) as resp:
        return json.loads(resp.read().decode())


class RunReader:
    """Reads one run back from the server."""

    def __init__(self, test, run_id):
        self.test = test
        self.id = run_id
        self.info = get(f"/api/v1/runs/{run_id}")
        self.series = {s["key"]: s for s in get(f"/api/v1/runs/{run_id}/series")["series"]}

    def steps(self, key):
        self.test.assertIn(key, self.series, f"{key} not logged; got {sorted(self.series)}")
        return get(f"/api/v1/runs/{self.id}/scalars?key={urllib.parse.quote(key, safe='')}")["steps"]

    def values(self, key):
        return get(f"/api/v1/runs/{self.id}/scalars?key={urllib.parse.quote(key, safe='')}")["values"]


@unittest.skipUnless(HAS_TRANSFORMERS, "transformers (with torch and accelerate) not installed")
@unittest.skipUnless(SERVER, NO_SERVER)
class HuggingFaceTest(unittest.TestCase):
    def test_trainer_logs_arrive_under_hf_names_at_global_steps(self):
        import torch
        from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

        from trainlens.integrations.huggingface import TrainlensCallback

        torch.manual_seed(0)
        model = BertForSequenceClassification(BertConfig(
            vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=16, num_labels=2))
        data = [{"input_ids": torch.randint(0, 32, (8,)), "labels": i % 2} for i in range(32)]
        callback = TrainlensCallback(project="py-integrations", name="hf", server=SERVER)
        with tempfile.TemporaryDirectory() as out:
            args = TrainingArguments(
                output_dir=out, max_steps=6, per_device_train_batch_size=4, per_device_eval_batch_size=8,
                learning_rate=1e-3, logging_steps=2, eval_strategy="steps", eval_steps=3,
                save_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
                dataloader_num_workers=0, seed=0)
            Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8],
                    callbacks=[callback]).train()

        run = RunReader(self, callback.run.id)
        self.assertEqual(run.info["status"], "finished")
        self.assertEqual(run.info["project"], "py-integrations")
        config = run.info["config"]
        self.assertEqual(config["learning_rate"], 1e-3)   # TrainingArguments
        self.assertEqual(config["hidden_size"], 16)       # the model's config
        self.assertEqual(config["batch_size"], 4)
        for key in ("loss", "grad_norm", "learning_rate"):
            self.assertEqual(run.steps(key), [2, 4, 6], key)
        self.assertEqual(run.steps("eval_loss"), [3, 6])
        self.assertEqual(run.steps("epoch"), [2, 3, 4, 6])  # the Trainer writes it with every log
        self.assertEqual(run.steps("train_loss"), [6])
        # watch(every=logging_steps): per-layer signals every 2 forward passes.
        grad_keys = [k for k in run.series if k.startswith("grad_norm/")]
        self.assertTrue(grad_keys, sorted(run.series))
        self.assertEqual(run.steps(grad_keys[0]), [0, 2, 4])
        self.assertTrue(get(f"/api/v1/runs/{run.id}/model")["layers"])


@unittest.skipUnless(HAS_LIGHTNING, "lightning (with torch) not installed")
@unittest.skipUnless(SERVER, NO_SERVER)
class LightningTest(unittest.TestCase):
    def test_logger_sends_lightning_names_hyperparameters_and_watch(self):
        import torch
        from torch import nn
        from torch.utils.data import DataLoader, TensorDataset

        try:
            import lightning.pytorch as pl
        except ImportError:
            import pytorch_lightning as pl

        from trainlens.integrations.lightning import TrainlensLogger

        class Tiny(pl.LightningModule):
            def __init__(self, lr=0.1):
                super().__init__()
                self.save_hyperparameters()
                self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

            def forward(self, x):
                return self.net(x)

            def training_step(self, batch, batch_idx):
                x, y = batch
                loss = nn.functional.cross_entropy(self(x), y)
                self.log("train_loss", loss, on_step=True, on_epoch=True)
                return loss

            def validation_step(self, batch, batch_idx):
                x, y = batch
                logits = self(x)
                self.log("val_loss", nn.functional.cross_entropy(logits, y))
                self.log("val_acc", (logits.argmax(1) == y).float().mean())

            def configure_optimizers(self):
                return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

        torch.manual_seed(0)
        x = torch.randn(32, 4)
        y = (x[:, 0] > 0).long()
        train = DataLoader(TensorDataset(x, y), batch_size=8)
        val = DataLoader(TensorDataset(x[:16], y[:16]), batch_size=8)
        model = Tiny(lr=0.1)
        logger = TrainlensLogger(project="py-integrations", name="lightning", server=SERVER)
        self.assertIsNone(logger.watch(model, every=2))  # deferred until the run exists
        with tempfile.TemporaryDirectory() as root:
            trainer = pl.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, accelerator="cpu",
                                 devices=1, enable_checkpointing=False, enable_progress_bar=False,
                                 enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=root)
            trainer.fit(model, train, val)

        run = RunReader(self, logger.run.id)
        self.assertEqual(run.info["status"], "finished")
        self.assertEqual(run.info["name"], "lightning")
        self.assertEqual(run.info["config"]["lr"], 0.1)   # save_hyperparameters()
        self.assertEqual(run.steps("train_loss_step"), list(range(8)))
        self.assertEqual(run.steps("train_loss_epoch"), [3, 7])
        self.assertEqual(run.steps("val_loss"), [3, 7])
        self.assertEqual(run.steps("val_acc"), [3, 7])
        self.assertIn("epoch", run.series)
        # The watch started with the run, before the first training step.
        self.assertEqual(run.steps("grad_norm/net.0"), [0, 2, 4, 6])
        self.assertIn("dead_frac/net.0", run.series)


@unittest.skipUnless(HAS_KERAS, f"keras (with its backend {KERAS_BACKEND}) not installed")
@unittest.skipUnless(SERVER, NO_SERVER)
class KerasTest(unittest.TestCase):
    def test_callback_sends_batch_and_epoch_logs_at_global_steps(self):
        import keras
        import numpy as np

        from trainlens.integrations.keras import TrainlensCallback

        keras.utils.set_random_seed(0)
        rng = np.random.default_rng(0)
        x = rng.normal(size=(32, 4)).astype("float32")
        y = (x[:, 0] > 0).astype("int64")
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"),
                                  keras.layers.Dense(2, activation="softmax")])
        model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        callback = TrainlensCallback(project="py-integrations", name="keras", server=SERVER)
        # 24 training samples in batches of 8: 3 steps an epoch.
        model.fit(x, y, batch_size=8, epochs=2, validation_split=0.25, verbose=0, callbacks=[callback])

        run = RunReader(self, callback.run.id)
        self.assertEqual(run.info["status"], "finished")
        config = run.info["config"]
        self.assertEqual(config["optimizer"], "sgd")
        self.assertAlmostEqual(config["learning_rate"], 0.05, places=6)
        self.assertEqual((config["epochs"], config["steps"]), (2, 3))
        for key in ("loss", "accuracy", "learning_rate"):
            self.assertEqual(run.steps(key), list(range(6)), key)
        self.assertAlmostEqual(run.values("learning_rate")[0], 0.05, places=6)
        for key in ("val_loss", "val_accuracy", "epoch"):
            self.assertEqual(run.steps(key), [2, 5], key)
        self.assertEqual(run.values("epoch"), [1.0, 2.0])


if __name__ == "__main__":
    unittest.main()
