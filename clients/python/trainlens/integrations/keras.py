"""Keras 3 ``model.fit`` → trainlens.

    import os; os.environ.setdefault("KERAS_BACKEND", "torch")  # or jax, tensorflow
    import keras
    from trainlens.integrations.keras import TrainlensCallback
    model.fit(x, y, validation_split=0.2, epochs=5,
              callbacks=[TrainlensCallback(project="mnist")])

At ``on_train_begin`` a run is created (or the ``run`` given is used) with
the config from the optimizer (``optimizer``: its name, ``learning_rate``:
the current value, and its other numeric settings such as ``weight_decay``,
``momentum``, ``beta_1``), the fit's ``epochs`` and ``steps`` (per epoch),
and the ``config`` given here.

After every batch the batch logs are sent under Keras' names (``loss``,
``accuracy``, ``mean_absolute_error``, …; Keras reports the running mean
over the epoch so far) at the step = the global batch index (0, 1, 2, …
across epochs), with ``learning_rate`` read from the optimizer when the logs
have none (``log_learning_rate=False`` to leave it out). At the end of each
epoch the validation logs (``val_loss``, ``val_accuracy``, …, and a
``learning_rate`` set by a scheduler callback) and ``epoch`` (epochs done)
are sent at the step of the epoch's last batch. ``on_train_end`` finishes
the run it created (``finish=False`` to keep it open); a run passed in is
left to its owner.

Keras picks its backend when it is first imported: set ``KERAS_BACKEND``
before that. Importing this module imports ``keras``.
"""

from __future__ import annotations

import numbers
from typing import TYPE_CHECKING, Any, Dict, Optional

import keras

import trainlens

from ._util import RunArgs, _RunOptions, _RunOwner, jsonable, numeric

if TYPE_CHECKING:
    from typing_extensions import Unpack  # typing.Unpack from Python 3.11

__all__ = ["TrainlensCallback"]


def _float(value: Any) -> Optional[float]:
    """A backend scalar (variable, tensor, numpy or Python number) as a float."""
    try:
        return float(value)
    except (TypeError, ValueError):
        try:
            return float(keras.ops.convert_to_numpy(value))
        except Exception:
            return None


class TrainlensCallback(_RunOptions, keras.callbacks.Callback):
    """Sends ``model.fit``'s batch and epoch logs to a trainlens run.

    ``project``, ``name``, ``config``, ``tags``, ``server`` go to
    :func:`trainlens.init`; ``run`` uses an existing run instead."""

    def __init__(
        self,
        project: str = "default",
        *,
        log_learning_rate: bool = True,
        finish: bool = True,
        **run_args: Unpack[RunArgs],
    ) -> None:
        super().__init__()
        self._owner = _RunOwner(project, **run_args)
        self.log_learning_rate = log_learning_rate
        self.finish = finish
        #: The next batch's step: batches seen since the run began.
        self.step = 0

    # -- the run's config ------------------------------------------------------
    def _current_lr(self) -> Optional[float]:
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not hasattr(optimizer, "learning_rate"):
            return None
        return _float(optimizer.learning_rate)

    def run_config(self) -> Dict[str, Any]:
        """The config sent: the optimizer's settings, ``epochs``, ``steps``."""
        config: Dict[str, Any] = {}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            try:
                opt = optimizer.get_config()
            except Exception:
                opt = {}
            config["optimizer"] = str(opt.get("name") or type(optimizer).__name__).lower()
            for key, value in opt.items():
                if key == "name" or isinstance(value, bool) or (key.startswith("ema_") and not opt.get("use_ema")):
                    continue
                if isinstance(value, numbers.Real):
                    config[key] = value
            lr = self._current_lr()
            if lr is not None:
                config["learning_rate"] = lr
        for key in ("epochs", "steps"):
            value = (self.params or {}).get(key)
            if isinstance(value, int):
                config[key] = value
        return jsonable(config)

    # -- fit events ------------------------------------------------------------
    def on_train_begin(self, logs: Optional[Dict[str, Any]] = None) -> None:
        if self._owner.startable:
            self._owner.start(self.run_config())
            self.step = 0

    def on_train_batch_end(self, batch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if self.run is None or self._owner.finished:
            return
        values = numeric(logs)
        if self.log_learning_rate and "learning_rate" not in values:
            lr = self._current_lr()
            if lr is not None:
                values["learning_rate"] = lr
        if values:
            self.run.log(values, step=self.step)
        self.step += 1

    def on_epoch_end(self, epoch: int, logs: Optional[Dict[str, Any]] = None) -> None:
        if self.run is None or self._owner.finished:
            return
        values = {k: v for k, v in numeric(logs).items() if k.startswith("val_") or k == "learning_rate"}
        values["epoch"] = float(epoch + 1)
        self.run.log(values, step=max(self.step - 1, 0))

    def on_train_end(self, logs: Optional[Dict[str, Any]] = None) -> None:
        if self.finish:
            self._owner.finish("finished")
