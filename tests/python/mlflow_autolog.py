"""Autologging into trainlens: the MLflow integrations of Hugging Face
`transformers.Trainer`, Lightning's `MLFlowLogger` and Keras, each training
a tiny model on CPU (no downloads) with `MLFLOW_TRACKING_URI` pointed at a
running trainlens. Every run is made faulty on purpose so that the Rust
test (tests/mlflow.rs) can check trainlens' diagnosis of it.

Usage: mlflow_autolog.py [FRAMEWORK ...] (default: torch hf lightning
keras). A framework that is not installed is skipped with a message; one
that is installed must train and land its run, or the script fails.
`torch` is a plain PyTorch loop logging with `mlflow.log_metric` and no
step (the client then sends step 0 every time).

Prints, as its last line, `RESULT {json}`: per framework either
`{"skipped": why}` or the run id, the finding expected, the metric keys
and params the client saw, and the versions used.
"""

import contextlib
import importlib
import importlib.util
import io
import json
import os
import sys
import time
import traceback

os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
# Keras autolog's model logging infers the model's pip requirements in a
# subprocess that loads the model (~10 s); cut short, it falls back to
# `keras==<version>` (the upload is refused by trainlens anyway).
os.environ.setdefault("MLFLOW_REQUIREMENTS_INFERENCE_TIMEOUT", "1")
# Keras 3 on the torch backend (set before keras is first imported).
os.environ.setdefault("KERAS_BACKEND", "torch")
# No network: nothing is downloaded, nothing is reported home.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("WANDB_DISABLED", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import mlflow  # noqa: E402
from mlflow.tracking import MlflowClient  # noqa: E402

assert os.environ.get("MLFLOW_TRACKING_URI", "").startswith("http"), "set MLFLOW_TRACKING_URI"
client = MlflowClient()


def installed(*modules):
    """None when every module imports, else why not."""
    for m in modules:
        try:
            importlib.import_module(m)
        except Exception as e:  # ImportError, or a broken install
            return f"`import {m}` fails: {type(e).__name__}: {e}"
    return None


def version(m):
    return getattr(importlib.import_module(m), "__version__", "?")


def landed(run_id):
    """What the client reads back of a run: its metric keys and params."""
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED", (run_id, run.info.status)
    return {
        "run_id": run_id,
        "experiment_id": run.info.experiment_id,
        "status": run.info.status,
        "metrics": sorted(run.data.metrics),
        "params": len(run.data.params),
        "some_params": {k: run.data.params[k] for k in sorted(run.data.params)[:3]},
    }


def seed(n=0):
    import random

    import numpy as np
    import torch

    random.seed(n)
    np.random.seed(n)
    torch.manual_seed(n)


# --- plain PyTorch, mlflow.log_metric without a step ------------------------


def plain_torch():
    """A linear regression trained by SGD at a learning rate far past
    stability (the loss grows geometrically, then overflows), logged the
    way many scripts do: `mlflow.log_metric("loss", value)` with no step,
    so MLflow sends step 0 each time."""
    import torch

    seed(0)
    x = torch.randn(64, 4)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=3.0)
    mlflow.set_experiment("autolog-torch")
    with mlflow.start_run(run_name="torch-diverges") as run:
        mlflow.log_params({"lr": 3.0, "optimizer": "sgd", "batch_size": 64})
        for _ in range(40):
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            opt.step()
            mlflow.log_metric("loss", loss.item())
    return landed(run.info.run_id) | {"expect": "divergence", "versions": {"torch": version("torch")}}


# --- Hugging Face transformers.Trainer, report_to=["mlflow"] ---------------


def hugging_face():
    """A 2-layer MLP wrapped as a `PreTrainedModel` (its config built here,
    nothing downloaded), trained by `Trainer` with its built-in
    `MLflowCallback` by plain SGD at a learning rate so high, without
    gradient clipping, that the loss grows until it is Inf, then NaN."""
    import torch
    from transformers import PretrainedConfig, PreTrainedModel, Trainer, TrainingArguments

    class TinyConfig(PretrainedConfig):
        model_type = "trainlens-tiny-mlp"

        def __init__(self, n_in=8, hidden=32, **kwargs):
            self.n_in, self.hidden = n_in, hidden
            super().__init__(**kwargs)

    class TinyMlp(PreTrainedModel):
        config_class = TinyConfig

        def __init__(self, config):
            super().__init__(config)
            self.fc1 = torch.nn.Linear(config.n_in, config.hidden)
            self.fc2 = torch.nn.Linear(config.hidden, 1)
            self.post_init()

        def _init_weights(self, module):
            pass  # torch's default initialisation

        def forward(self, x=None, labels=None):
            out = self.fc2(torch.tanh(self.fc1(x)))
            loss = None if labels is None else torch.nn.functional.mse_loss(out, labels)
            return {"loss": loss, "logits": out}

    class Regression(torch.utils.data.Dataset):
        def __init__(self, n, seed):
            g = torch.Generator().manual_seed(seed)
            self.x = torch.randn(n, 8, generator=g)
            self.y = self.x[:, :1] * 2 + self.x[:, 1:2]

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            return {"x": self.x[i], "labels": self.y[i]}

    seed(0)
    os.environ["MLFLOW_EXPERIMENT_NAME"] = "autolog-hf"
    os.environ["MLFLOW_TAGS"] = json.dumps({"suite": "autolog", "framework": "hf"})
    model = TinyMlp(TinyConfig())
    with tempfile_dir() as out:
        args = TrainingArguments(
            output_dir=out,
            run_name="hf-diverges",
            report_to=["mlflow"],
            learning_rate=0.5,
            optim="sgd",
            lr_scheduler_type="constant",
            max_grad_norm=0.0,
            logging_nan_inf_filter=False,
            num_train_epochs=3,
            per_device_train_batch_size=8,
            per_device_eval_batch_size=32,
            logging_steps=2,
            eval_strategy="steps",
            eval_steps=8,
            save_strategy="no",
            use_cpu=True,
            dataloader_num_workers=0,
            disable_tqdm=True,
            seed=0,
        )
        trainer = Trainer(model=model, args=args, train_dataset=Regression(128, 1), eval_dataset=Regression(32, 2))
        trainer.train()
    run_id = last_run("autolog-hf")
    return landed(run_id) | {"expect": "divergence", "versions": {"transformers": version("transformers")}}


# --- Lightning MLFlowLogger --------------------------------------------------


def lightning():
    """A LightningModule (an MLP) memorising 32 samples with random labels:
    the training loss falls to ~0 while the validation loss (other random
    labels) climbs — overfitting — logged through `MLFlowLogger`."""
    import lightning.pytorch as pl
    import torch
    from lightning.pytorch.callbacks import LearningRateMonitor
    from lightning.pytorch.loggers import MLFlowLogger

    seed(0)
    x, y = torch.randn(32, 16), torch.randint(0, 4, (32,))
    vx, vy = torch.randn(64, 16), torch.randint(0, 4, (64,))

    class Mlp(pl.LightningModule):
        def __init__(self, lr=0.02, hidden=128):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(16, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 4)
            )

        def training_step(self, batch, _):
            loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.log("train_loss", loss, on_step=True, on_epoch=True)  # train_loss_step, _epoch
            return loss

        def validation_step(self, batch, _):
            loss = torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])
            self.log("val_loss", loss)

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

    def loader(a, b, shuffle):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(a, b), batch_size=16, shuffle=shuffle)

    logger = MLFlowLogger(
        experiment_name="autolog-lightning",
        run_name="lightning-overfits",
        tracking_uri=os.environ["MLFLOW_TRACKING_URI"],
        log_model=False,
    )
    with tempfile_dir() as out:
        trainer = pl.Trainer(
            max_epochs=16,
            logger=logger,
            callbacks=[LearningRateMonitor()],  # lr-Adam
            accelerator="cpu",
            devices=1,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            log_every_n_steps=1,
            default_root_dir=out,
        )
        trainer.fit(Mlp(), loader(x, y, True), loader(vx, vy, False))
    return landed(logger.run_id) | {"expect": "overfitting", "versions": {"lightning": version("lightning")}}


# --- Keras ---------------------------------------------------------------------


def keras_callback():
    """MLflow's Keras integration: `mlflow.keras.autolog()` when it imports,
    else `mlflow.keras.MlflowCallback` — with mlflow-skinny alone neither
    imports (`mlflow.keras` needs pandas, which the full `mlflow` installs;
    CI installs it beside mlflow-skinny), so the callback's own module is
    loaded from the installed mlflow: the same code autolog attaches."""
    try:
        return "autolog", importlib.import_module("mlflow.keras")
    except ImportError as e:
        why = f"{type(e).__name__}: {e}"
    path = os.path.join(os.path.dirname(mlflow.__file__), "keras", "callback.py")
    spec = importlib.util.spec_from_file_location("trainlens_test_mlflow_keras_callback", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return f"MlflowCallback from {path} (import mlflow.keras: {why})", module


def keras():
    """A Keras 3 MLP (torch backend) trained by SGD at a learning rate so
    high that the loss diverges to NaN/Inf."""
    import keras
    import numpy as np

    seed(0)
    keras.utils.set_random_seed(0)
    how, mod = keras_callback()
    x = np.random.randn(256, 8).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1e3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    mlflow.set_experiment("autolog-keras")
    if how == "autolog":
        # autolog's defaults: it also logs the datasets (accepted and
        # dropped) and the model, whose upload trainlens refuses (501,
        # "not artifacts"): autolog warns after training, and the run keeps
        # its params and metrics.
        mod.autolog()
        with mlflow.start_run(run_name="keras-diverges") as run:
            model.fit(x, y, validation_split=0.25, epochs=6, batch_size=32, verbose=0)
    else:
        with mlflow.start_run(run_name="keras-diverges") as run:
            model.fit(
                x, y, validation_split=0.25, epochs=6, batch_size=32, verbose=0,
                callbacks=[mod.MlflowCallback()],
            )
    mlflow.flush_async_logging()
    model = {}
    if how == "autolog":
        # Made before training (so that the metrics callback is attached),
        # marked failed when its files were refused.
        m = mlflow.last_logged_model()
        assert m is not None and m.source_run_id == run.info.run_id, m
        model = {"model_id": m.model_id, "model_status": str(m.status)}
    return landed(run.info.run_id) | model | {
        "expect": "divergence",
        "how": how,
        "versions": {"keras": version("keras"), "backend": keras.backend.backend()},
    }


# ------------------------------------------------------------------------------


@contextlib.contextmanager
def tempfile_dir():
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        yield d


def last_run(experiment):
    e = client.get_experiment_by_name(experiment)
    assert e is not None, f"no experiment {experiment!r}"
    runs = client.search_runs([e.experiment_id], "", order_by=["attributes.start_time DESC"], max_results=1)
    assert runs, f"no run in {experiment!r}"
    return runs[0].info.run_id


FRAMEWORKS = {
    "torch": (plain_torch, ("torch",)),
    "hf": (hugging_face, ("torch", "transformers", "accelerate")),
    "lightning": (lightning, ("torch", "lightning")),
    "keras": (keras, ("torch", "keras")),
}

result = {"mlflow": version("mlflow")}
failed = []
for name in sys.argv[1:] or list(FRAMEWORKS):
    train, modules = FRAMEWORKS[name]
    t0 = time.monotonic()  # the framework's imports included
    why = installed(*modules)
    if why:
        print(f"{name}: skipped, {why}", file=sys.stderr)
        result[name] = {"skipped": why}
        continue
    log = io.StringIO()
    try:
        with contextlib.redirect_stdout(log):
            result[name] = train()
        result[name]["seconds"] = round(time.monotonic() - t0, 1)
        print(f"{name}: {json.dumps(result[name])}", file=sys.stderr)
    except Exception:
        print(log.getvalue(), file=sys.stderr)
        traceback.print_exc()
        failed.append(name)
    mlflow.end_run()

if failed:
    sys.exit(f"FAILED: {failed}")
print("RESULT " + json.dumps(result))
